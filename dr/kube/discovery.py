"""API discovery: which resource types the cluster serves, in which versions, with which verbs.

``discover`` reads ``/api``, ``/apis`` and one resource list per group version
(in parallel). Custom resources appear like built-in ones. A group whose
resource list cannot be fetched — typically an aggregated API whose backing
service is down (``metrics.k8s.io`` answering 503) — is left out with a
warning instead of failing the whole discovery; only the core and the group
list themselves are required.

Resource types are named by users as a plural (``deployments``), a kind
(``Deployment``), a singular or short name (``deploy``), optionally qualified
by group (``deployments.apps``, ``Deployment.apps``), case-insensitively:
``ApiResource.matches``.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from dr.errors import InvalidInput
from dr.kube.client import ApiError, KubeClient


@dataclass(frozen=True)
class ApiResource:
    """One top-level resource type in one group version (subresources are not listed)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: frozenset[str] = frozenset()
    singular: str = ""
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """``plural.group`` (``plural`` for the core group): the name RBAC and kubectl use."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def base_path(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def collection_path(self, namespace: str | None = None) -> str:
        if self.namespaced and namespace:
            return f"{self.base_path}/namespaces/{namespace}/{self.plural}"
        return f"{self.base_path}/{self.plural}"

    def object_path(self, namespace: str | None, name: str) -> str:
        return f"{self.collection_path(namespace if self.namespaced else None)}/{name}"

    def supports(self, *verbs: str) -> bool:
        return all(v in self.verbs for v in verbs)

    def matches(self, spec: str) -> bool:
        """Whether a user's type name (plural, kind, singular, short name, ``.group``-qualified) names this."""
        s = spec.strip().lower()
        names = {
            self.plural,
            self.kind.lower(),
            self.singular.lower(),
            *(n.lower() for n in self.short_names),
        }
        names.discard("")
        if s in names:
            return True
        name, dot, group = s.partition(".")
        return bool(dot) and name in names and group == self.group.lower()


@dataclass
class Discovery:
    """What the cluster serves. ``resources`` holds every version fetched; ``preferred`` each group's choice."""

    resources: list[ApiResource] = field(default_factory=list)
    preferred: dict[str, str] = field(default_factory=dict)  # group -> preferred version
    warnings: list[str] = field(default_factory=list)
    # Groups a version of which could not be discovered (e.g. an aggregated API answering 503):
    # a kind of theirs not in ``resources`` may be served all the same.
    failed_groups: set[str] = field(default_factory=set)
    # (group, warning) of each group version whose discovery failed; the warnings are in ``warnings``.
    failures: list[tuple[str, str]] = field(default_factory=list)
    _index: dict[tuple[str, str, str], ApiResource] = field(default_factory=dict, repr=False, compare=False)

    def preferred_resources(self) -> list[ApiResource]:
        """Each type once: in its group's preferred version, else in the first version (the
        server's order) that serves it, like client-go's ServerPreferredResources. A CRD
        served only in v1beta1 beside one served in v1 is a type of the group all the same;
        taking only the preferred version's types left it out of backups in silence."""
        best: dict[tuple[str, str], ApiResource] = {}
        for r in self.resources:  # each group's versions in the server's order
            key = (r.group, r.plural)
            cur = best.get(key)
            if cur is None or (r.version == self.preferred.get(r.group) != cur.version):
                best[key] = r
        return list(best.values())

    def lookup(self, group: str, version: str, plural: str) -> ApiResource | None:
        if len(self._index) != len(self.resources):
            self._index = {(r.group, r.version, r.plural): r for r in self.resources}
        return self._index.get((group, version, plural))

    def versions_of(self, group: str, plural: str) -> list[str]:
        return [r.version for r in self.resources if r.group == group and r.plural == plural]

    def find(self, spec: str) -> list[ApiResource]:
        """Preferred-version resources a user's type name refers to (may be several, e.g. ``events``)."""
        return [r for r in self.preferred_resources() if r.matches(spec)]

    def add(self, resources: Iterable[ApiResource]) -> None:
        """Merge freshly discovered resources (e.g. after creating a CRD), replacing same-named ones."""
        new = list(resources)
        keys = {(r.group, r.version, r.plural) for r in new}
        self.resources = [r for r in self.resources if (r.group, r.version, r.plural) not in keys] + new
        self._index = {}
        for r in new:
            self.preferred.setdefault(r.group, r.version)


def _parse_resource_list(group: str, version: str, doc: dict[str, Any]) -> list[ApiResource]:
    out = []
    for r in doc.get("resources") or []:
        name = str(r.get("name", ""))
        if not name or "/" in name:  # subresources (pods/log, deployments/scale) are not types
            continue
        out.append(
            ApiResource(
                group=group,
                version=version,
                plural=name,
                kind=str(r.get("kind", "")),
                namespaced=bool(r.get("namespaced")),
                verbs=frozenset(str(v) for v in r.get("verbs") or []),
                singular=str(r.get("singularName") or ""),
                short_names=tuple(str(s) for s in r.get("shortNames") or []),
            )
        )
    return out


def discover_group_version(kube: KubeClient, group: str, version: str) -> list[ApiResource]:
    """The resources of one group version; ``ApiError`` (e.g. 404 while a CRD is not yet served)."""
    path = f"/apis/{group}/{version}" if group else f"/api/{version}"
    return _parse_resource_list(group, version, kube.get(path))


def discover(kube: KubeClient, *, all_versions: bool = False, workers: int = 8) -> Discovery:
    """Discover the cluster's resource types: every served version of every group (a type
    may be served only in a version that is not its group's preferred one), and of the core
    API its first version, or all of them with ``all_versions``.

    Restore uses ``all_versions`` (a backup taken where ``v1`` was preferred must
    still find ``v1`` where ``v2`` is). Raises ``ApiError`` only when the core
    API or the group list cannot be read.
    """
    disc = Discovery()
    core_versions = [str(v) for v in kube.get("/api").get("versions") or ["v1"]]
    wanted: list[tuple[str, str]] = (
        [("", core_versions[0])] if not all_versions else [("", v) for v in core_versions]
    )
    disc.preferred[""] = core_versions[0]
    for g in kube.get("/apis").get("groups") or []:
        name = str(g.get("name", ""))
        versions = [str(v.get("version")) for v in g.get("versions") or []]
        pref = str((g.get("preferredVersion") or {}).get("version") or (versions[0] if versions else ""))
        if not name or not pref:
            continue
        disc.preferred[name] = pref
        wanted += [(name, v) for v in versions]

    def fetch(gv: tuple[str, str]) -> list[ApiResource] | ApiError:
        try:
            return discover_group_version(kube, *gv)
        except ApiError as e:
            return e

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(fetch, wanted))
    for (group, version), res in zip(wanted, results, strict=True):
        if isinstance(res, ApiError):
            if group == "":
                raise res
            gv = f"{group}/{version}"
            text = f"API group {gv}: discovery failed, its resources are skipped: {res.short}"
            disc.warnings.append(text)
            disc.failures.append((group, text))
            disc.failed_groups.add(group)
            continue
        disc.resources.extend(res)
    # A preferred version that failed leaves the group without a usable preference.
    served = {(r.group, r.version) for r in disc.resources}
    for group, version in list(disc.preferred.items()):
        if (group, version) not in served:
            del disc.preferred[group]
    return disc


def split_specs(specs: Iterable[str]) -> list[str]:
    """Type names as given on a command line: ``a,b`` and repeated options alike."""
    return [s.strip() for spec in specs for s in spec.split(",") if s.strip()]


def match_specs(
    specs: Iterable[str], resources: Iterable[ApiResource]
) -> tuple[set[tuple[str, str]], list[str]]:
    """The ``(group, plural)`` pairs the type names refer to, and the names that match nothing."""
    resources = list(resources)
    matched: set[tuple[str, str]] = set()
    unknown: list[str] = []
    for spec in split_specs(specs):
        hits = {(r.group, r.plural) for r in resources if r.matches(spec)}
        if not hits:
            unknown.append(spec)
        matched |= hits
    return matched, unknown


def check_not_all_excluded(
    include: list[str], included: set[tuple[str, str]] | None, excluded: set[tuple[str, str]]
) -> None:
    """``InvalidInput`` when every type ``--include-resources`` names is also excluded: what is left
    is the Namespace objects alone, a backup or restore of nothing that says "Completed". (Some of
    them excluded is a narrowing, as documented: exclusion wins.)"""
    if included and included <= excluded:
        raise InvalidInput(
            f"--include-resources {','.join(include)}: every type it names is excluded by --exclude-resources"
        )
