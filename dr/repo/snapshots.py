"""Snapshot documents (FORMAT.md §8): model, save, load, list, resolve ``latest``.

A snapshot is the unit users list, restore, verify and forget. ``kind:
volume`` is a directory tree (one PVC, or ``dr mover backup``); ``kind:
backup`` is an application backup whose details (scope, counts, volumes,
results) the orchestration layer keeps in ``app``. What the repository itself
must understand — trees, streams and referenced snapshots — is typed here so
that check and prune can find every blob a snapshot needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from dr import __version__
from dr.errors import InvalidInput
from dr.repo.format import FormatError
from dr.repo.repository import Repository, hostname, now_utc

SNAPSHOT_VERSION = 1


class _Model(BaseModel):
    # Readers ignore unknown fields (FORMAT.md §11: additive changes keep the version).
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Stream(_Model):
    """A chunked byte stream: resource JSON lines or a hook dump."""

    blobs: list[str] = Field(default_factory=list)
    size: int = 0


class VolumeStats(_Model):
    files: int = 0
    dirs: int = 0
    bytes: int = 0
    new_bytes: int = 0
    new_blobs: int = 0
    duration_seconds: float = 0.0


class Snapshot(_Model):
    version: int = SNAPSHOT_VERSION
    id: str = ""
    kind: Literal["volume", "backup"]
    time: datetime = Field(default_factory=now_utc)
    hostname: str = Field(default_factory=hostname)
    tags: dict[str, str] = Field(default_factory=dict)
    program: str = f"dr {__version__}"
    # volume snapshots
    paths: list[str] = Field(default_factory=list)
    tree: str | None = None
    parent: str | None = None
    stats: VolumeStats | None = None
    # application backups
    name: str | None = None
    policy: str | None = None
    namespaces: list[str] = Field(default_factory=list)
    phase: str | None = None
    streams: dict[str, Stream] = Field(default_factory=dict)
    refs: list[str] = Field(default_factory=list)  # volume snapshots this backup needs
    app: dict[str, Any] = Field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return self.id[:8]

    def to_doc(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def save_snapshot(repo: Repository, snap: Snapshot) -> Snapshot:
    """Write the snapshot object — the last write of a backup (FORMAT.md §8)."""
    import os

    name = os.urandom(32).hex()
    snap = snap.model_copy(update={"id": name})
    repo.save_object("snapshots", snap.to_doc(), name=name)
    return snap


def _parse(name: str, doc: dict[str, Any]) -> Snapshot:
    if doc.get("version") != SNAPSHOT_VERSION:
        raise FormatError(f"snapshots/{name}: unsupported snapshot version {doc.get('version')!r}")
    try:
        snap = Snapshot.model_validate(doc)
    except ValidationError as e:
        raise FormatError(f"snapshots/{name}: malformed ({e.error_count()} problems)") from None
    if snap.id != name:
        raise FormatError(f"snapshots/{name}: id does not match the object name")
    return snap


def load_snapshot(repo: Repository, name: str) -> Snapshot:
    return _parse(name, repo.load_object("snapshots", name))


def list_snapshots(repo: Repository, kind: str | None = None) -> list[Snapshot]:
    """All snapshots, oldest first."""
    snaps = [_parse(n, d) for n, d in repo.load_objects("snapshots")]
    if kind:
        snaps = [s for s in snaps if s.kind == kind]
    return sorted(snaps, key=lambda s: (s.time, s.id))


def resolve(snaps: Iterable[Snapshot], ref: str, *, what: str = "backup") -> Snapshot:
    """``latest``, a full id or a unique id prefix (at least 4 hex digits)."""
    items = list(snaps)
    if ref == "latest":
        if not items:
            raise InvalidInput(f"no {what} found in the repository")
        return max(items, key=lambda s: (s.time, s.id))
    if len(ref) < 4:
        raise InvalidInput(f"{what} id {ref!r} is too short (give at least 4 characters, or 'latest')")
    matches = [s for s in items if s.id.startswith(ref)]
    if not matches:
        raise InvalidInput(f"no {what} with id {ref!r}")
    if len(matches) > 1:
        raise InvalidInput(f"{what} id {ref!r} is ambiguous ({len(matches)} matches)")
    return matches[0]
