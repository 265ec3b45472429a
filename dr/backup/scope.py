"""What a resource backup covers: ``BackupScope`` and the matching rules for namespaces.

Namespaces are names or shell-style globs (``team-*``, ``app-?``), matched
case-sensitively like Kubernetes names; an empty list means every namespace.
Resource types are plurals, kinds, short names or ``plural.group``
(``dr.kube.discovery.ApiResource.matches``), comma-separated or repeated.

``include_cluster_resources``:

* ``auto`` — the cluster-scoped objects the selected namespaced ones depend on:
  CRDs of backed-up custom resources, PersistentVolumes bound to backed-up
  PVCs and the StorageClasses of both, ClusterRoles referenced by backed-up
  RoleBindings, ClusterRoleBindings granting backed-up ServiceAccounts (and
  their ClusterRoles);
* ``true`` — every cluster-scoped object the selector and type filters admit,
  plus the dependencies above;
* ``false`` — none.

In every mode the Namespace objects of the selected namespaces are backed up
(unless ``namespaces`` is explicitly excluded): they carry labels and
annotations (pod-security levels, network-policy selectors) that a restore
into a fresh cluster needs.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dr.backup.namespace_globs import NAME_RULE, is_glob, namespace_pattern_problem
from dr.kube.discovery import split_specs
from dr.kube.selectors import parse_selector

__all__ = ["NAME_RULE", "BackupScope", "is_glob", "match_namespaces", "namespace_entry_problems",
           "namespace_pattern_problem"]  # fmt: skip


class BackupScope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    namespaces: list[str] = Field(default_factory=list, description="names or globs; empty: all")
    selector: str | None = None
    include_resources: list[str] = Field(default_factory=list)
    exclude_resources: list[str] = Field(default_factory=list)
    include_cluster_resources: Literal["auto", "true", "false"] = "auto"

    @field_validator("include_resources", "exclude_resources", "namespaces", mode="after")
    @classmethod
    def _split_commas(cls, v: list[str]) -> list[str]:
        return split_specs(v)

    @field_validator("include_cluster_resources", mode="before")
    @classmethod
    def _bool_as_text(cls, v: Any) -> Any:
        return str(v).lower() if isinstance(v, bool) else v

    @field_validator("selector", mode="after")
    @classmethod
    def _valid_selector(cls, v: str | None) -> str | None:
        parse_selector(v)  # InvalidInput with the reason
        return v or None

    @classmethod
    def from_config(cls, scope: Any) -> BackupScope:
        """From ``dr.config.Scope`` (a backup policy's scope), which has the same fields."""
        return cls(
            namespaces=list(scope.namespaces),
            selector=scope.selector,
            include_resources=list(scope.include_resources),
            exclude_resources=list(scope.exclude_resources),
            include_cluster_resources=scope.include_cluster_resources,
        )


def namespace_entry_problems(entry: str, *, others_name_some: bool = False) -> list[str]:
    """Why the backup can never match the namespaces of ``entry`` (names or globs, comma-separated,
    as a scope lists them and ``split_specs`` splits them), one reason a pattern; [] when it can.

    An entry with no name at all is a problem of its own: the backup skips it, and when
    no other entry of the scope names a namespace (``others_name_some`` false) it reads
    the scope as no namespaces given, which means every namespace."""
    patterns = split_specs([entry])
    if not patterns:
        if others_name_some:
            return [
                f"{entry!r} names no namespace (the backup skips it: with the other entries, it backs up only theirs)"
            ]
        return [
            f"{entry!r} names no namespace (the backup would take it for none, and back up every namespace)"
        ]
    return [why for p in patterns if (why := namespace_pattern_problem(p))]


def match_namespaces(patterns: list[str], existing: list[str]) -> tuple[list[str], list[str]]:
    """Namespaces of ``existing`` matching any pattern (all when none), and literal names that don't exist."""
    if not patterns:
        return sorted(existing), []
    chosen = sorted({ns for ns in existing for p in patterns if fnmatch.fnmatchcase(ns, p)})
    have = set(existing)
    missing = [p for p in patterns if not is_glob(p) and p not in have]
    return chosen, missing
