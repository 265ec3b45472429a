"""Looking inside a restored volume: the ``DataProbe`` seam and the directory walk behind it.

A ``data`` verification step asks "what is at these paths of that PVC?" and
compares the answers with the runbook. How the answer is obtained is the
probe's business: in a cluster, a mover Job mounts the restored PVC and runs
``probe_directory`` on the mount (built by the data-mover work); on a machine
that has the volume's files at hand, ``LocalDirectoryProbe`` walks them
directly. Both return the same ``PathProbe`` records, so the step logic does
not care which one ran.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from dr.errors import DrError

_BLOCK = 1 << 20


@dataclass(frozen=True)
class PathProbe:
    """What a path in a volume is: a file (with its sha256), a directory (with its file count), or missing."""

    kind: Literal["file", "dir", "missing"]
    sha256: str | None = None
    count: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PathProbe:
        return cls(kind=d["kind"], sha256=d.get("sha256"), count=d.get("count"))


class ProbeError(DrError):
    """The volume could not be looked at (probe Job failed, volume not mounted, …)."""


class DataProbe(Protocol):
    """Describes ``paths`` of a PVC; what it could not check on the way without failing (its
    probe pod placed on no node of its choosing, …) it adds to ``warnings``, one line each."""

    def __call__(
        self, namespace: str, pvc: str, paths: Sequence[str], *, timeout: float, warnings: list[str]
    ) -> Mapping[str, PathProbe]: ...


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    buf = bytearray(_BLOCK)
    view = memoryview(buf)
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def _count_files(root: Path) -> int:
    # Regular files only, symlinks not followed: a restored volume must not
    # be able to point the probe outside itself.
    n = 0
    for dirpath, _dirs, files in os.walk(root, followlinks=False):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p) and os.path.isfile(p):
                n += 1
    return n


def probe_directory(root: Path, paths: Sequence[str]) -> dict[str, PathProbe]:
    """Probe ``paths`` (relative, ``.`` for the root) under ``root``; what a mover Job runs on the mount."""
    base = root.resolve()
    out: dict[str, PathProbe] = {}
    for rel in paths:
        target = (base / rel).resolve() if rel != "." else base
        if target != base and base not in target.parents:
            # A symlink in the volume pointing outside it: treat as absent.
            out[rel] = PathProbe("missing")
        elif target.is_file():
            out[rel] = PathProbe("file", sha256=_sha256(target), count=1)
        elif target.is_dir():
            out[rel] = PathProbe("dir", count=_count_files(target))
        else:
            out[rel] = PathProbe("missing")
    return out


class LocalDirectoryProbe:
    """A ``DataProbe`` over directories on this machine: ``locate(namespace, pvc)`` gives the volume's root."""

    def __init__(self, locate: Callable[[str, str], Path | None]) -> None:
        self._locate = locate

    def __call__(
        self, namespace: str, pvc: str, paths: Sequence[str], *, timeout: float, warnings: list[str]
    ) -> Mapping[str, PathProbe]:
        root = self._locate(namespace, pvc)
        if root is None or not root.is_dir():
            raise ProbeError(f"volume of PVC {namespace}/{pvc} is not available to the probe")
        return probe_directory(root, paths)
