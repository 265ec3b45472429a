"""Wire the volume engine (mover Jobs, hooks, dumps) into ``dr backup`` and ``dr restore``.

The movers open the repository themselves, inside the cluster: they get the
repository URL on their command line and dr.yaml (repository options, key
providers) from the ``dr-config`` ConfigMap, credentials from the Secret named
in ``mover.credentialsSecret``. This module only builds those contexts from
the active configuration and turns the engine's results into what the
snapshot records.

Restore movers run in the PVC's namespace, which a restore often creates
(a lost namespace, a drill's scratch namespace): before the data is
restored, the ConfigMap ``dr-config`` and the credentials Secret are copied
from dr's namespace into each target namespace that lacks them, and
deleted again when the data is in. Restoring needs ``get`` on those two
objects in dr's namespace; the copies live only while the movers run (a
crash in between leaves them labelled ``dr.dev/mover=true`` with an expiry,
like every temporary object of a run; a drill's go with its namespace).
Runs at the same time in one namespace share a copy: each registers on it,
and the last one out deletes it (``MoverConfigCopies``).
The data probes of ``dr runbook verify`` in an app's own namespace get a
copy of dr-config the same way (``ConfigCopyingProbe``; no credentials: a
probe does not open the repository).

Database dumps (``dump:`` streams of a backup) are loaded after the
workloads are running, by the pods' restore hooks: ``restore_backup_dumps``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dr.backup.hooks import DumpRecord, HookResult, restore_dumps, restore_hook_of, run_dump_hooks
from dr.backup.run import VolumePhase, VolumeStep
from dr.backup.volumes import (
    RepositorySnapshotFinder,
    VolumeBackupContext,
    VolumeResult,
    backup_volumes,
)
from dr.cli.context import AppContext
from dr.cli.repo_access import repository_config
from dr.config import BackupPolicy, MoverOptions, VolumeOptions
from dr.deploy.workloads import CONFIG_MAP
from dr.drill.probe import DataProbe, PathProbe, ProbeError
from dr.errors import DrError
from dr.kube import apply as kapply
from dr.kube.client import ApiError, KubeClient
from dr.kube.collect import get_object, list_objects
from dr.kube.discovery import ApiResource
from dr.kube.exec import Exec, KubernetesExec
from dr.kube.jobs import (
    CONFIG_MAPS,
    EXPIRES_LABEL,
    MOVER_LABEL,
    PODS,
    RUN_LABEL,
    SECRETS,
    cleanup_leftovers,
    expiry,
    temporary_labels,
)
from dr.kube.objects import label_value
from dr.repo.repository import Repository
from dr.repo.snapshots import Snapshot, readable_snapshots
from dr.restore.results import ItemResults
from dr.restore.run import VolumeRestorePhase, VolumeRestoreStep, volume_snapshots
from dr.restore.volumes import VolumeRestoreContext, awaiting_data, not_restored, restore_volumes

log = logging.getLogger(__name__)

DUMP_PREFIX = "dump:"


def _parents(repo: Repository, policy: BackupPolicy | None, name: str | None) -> dict[str, str]:
    """Each PVC's volume snapshot in the latest earlier backup of the same policy that has one
    (incremental). Not only the very latest backup: a volume that failed there (a killed mover,
    a drained node) would otherwise be read and compared in full the next time. A snapshot saved
    with errors (entries the mover could not read) is a fine parent: it holds what it holds."""
    backups = [s for s in readable_snapshots(repo, "backup")[0] if (policy and s.policy == policy.name)
               or (not policy and name and s.name == name)]  # fmt: skip
    out: dict[str, str] = {}
    for backup in reversed(backups):  # newest first
        for v in backup.app.get("volumes", []):
            sid, key = v.get("snapshotId"), f"{v.get('namespace')}/{v.get('pvc')}"
            if sid and key not in out:
                out[key] = str(sid)
    return out


def volume_backup_step(app: AppContext, policy: BackupPolicy | None) -> VolumeStep:
    cfg = app.loaded.config
    repo_url = repository_config(app, policy.repository if policy else None).url

    def step(
        kube: KubeClient,
        repo: Repository,
        backup_id: str,
        pvcs: list[dict[str, Any]],
        pods: list[dict[str, Any]],
    ) -> VolumePhase:
        # Leftovers of crashed earlier runs (expired, labelled) in the namespaces this backup touches.
        spaces = sorted(
            {cfg.mover.namespace, *((p.get("metadata") or {}).get("namespace", "") for p in pvcs)} - {""}
        )
        swept = cleanup_leftovers(kube, time.time(), namespaces=spaces)
        ctx = VolumeBackupContext(
            repo_url=repo_url,
            backup_id=backup_id,
            mover=cfg.mover,
            volumes=policy.volumes if policy else VolumeOptions(),
            hooks=policy.hooks if policy else [],
            parents=_parents(repo, policy, None),
            tags=dict(policy.tags) if policy else {},
        )
        exec_ = KubernetesExec(kube)
        phase = VolumePhase()
        for problem in swept.errors:  # e.g. no right to list Jobs in an app namespace: nothing of ours there
            log.debug("leftovers of earlier runs: %s", problem)
        if swept.deleted:
            log.info("deleted leftovers of earlier runs: %s", ", ".join(swept.deleted))
        # A namespace's warnings (its pods cannot be listed: no hooks) are the backup's, once each.
        results: list[VolumeResult] = backup_volumes(
            kube, pvcs, ctx, RepositorySnapshotFinder(repo), exec_=exec_, on_warning=phase.warnings.append
        )
        for r in results:
            phase.volumes.append(r.model_dump(mode="json", by_alias=True, exclude_none=True))
            if r.error:
                phase.errors.append(r.describe())
            if r.snapshot_id:
                # Also with an error: the mover saved what it could read (exit 3 names the rest),
                # restores use it, so it must live as long as the backup that points at it.
                phase.refs.append(r.snapshot_id)
            phase.warnings += [f"volume {r.key}: {w}" for w in r.warnings]
        dumps = [p for p in pods if any(k.startswith("dump.hook.backup.dr.dev/") for k in
                                        ((p.get("metadata") or {}).get("annotations") or {}))]  # fmt: skip
        if dumps:
            with repo.saver() as saver:
                outcome = run_dump_hooks(exec_, repo, saver, dumps)
                saver.flush()
            for rec in outcome.records:
                phase.dumps[DUMP_PREFIX + rec.key] = rec.stream
                phase.dump_info.append(rec.model_dump(mode="json", exclude={"stream"}))
            phase.errors += outcome.errors
        return phase

    return step


def dump_records(snap: Snapshot) -> list[DumpRecord]:
    records = []
    for info in snap.app.get("dumps", []):
        key = f"{DUMP_PREFIX}{info['namespace']}/{info['pod']}/{info['name']}"
        if key in snap.streams:
            records.append(DumpRecord.model_validate({**info, "stream": snap.streams[key]}))
    return records


def volume_restore_step(app: AppContext, repository: str | None = None) -> VolumeRestoreStep:
    """The data step of a restore or a drill reading the backup from ``repository`` (a
    configured name; the default one if None): its movers read the same repository."""
    cfg = app.loaded.config
    repo_url = repository_config(app, repository).url

    def step(kube: KubeClient, snap: Snapshot, results: ItemResults, restore_id: str) -> VolumeRestorePhase:
        # Only claims marked as awaiting their data get it: the ones this restore (or an earlier,
        # unfinished run) created. An existing claim is in use, or was skipped on purpose.
        targets, problems, kept = awaiting_data(kube, results, volume_snapshots(snap))
        phase = VolumeRestorePhase(errors=problems, warnings=[not_restored(kept)] if kept else [])
        if not targets:
            return phase
        ctx = VolumeRestoreContext(repo_url=repo_url, restore_id=restore_id, mover=cfg.mover)
        copies = MoverConfigCopies(kube, cfg.mover, restore_id)
        try:
            for ns in sorted({t.namespace for t in targets}):
                copies.ensure(ns)
            # A namespace's warnings (its pods cannot be listed) are the restore's, once each.
            restored = restore_volumes(
                kube,
                targets,
                ctx,
                describe_snapshot=snapshot_summaries(snap),
                on_warning=phase.warnings.append,
            )
        finally:
            cleanup = copies.delete_all()
        for res in restored:
            phase.volumes.append(res.model_dump(mode="json", by_alias=True, exclude_none=True))
            if res.error:
                phase.errors.append(res.describe())
            # As the backup's step does: a mover Job or claim copy that could not be deleted is news.
            phase.warnings += [f"volume {res.key}: {w}" for w in res.warnings]
        for p in cleanup:
            log.warning("%s", p)
        return phase

    return step


def snapshot_summaries(snap: Snapshot) -> Callable[[str], dict[str, Any] | None]:
    """Files and bytes of each volume snapshot as the backup recorded them (when a mover's summary is unreadable)."""
    by_id = {str(v["snapshotId"]): v for v in snap.app.get("volumes", []) if v.get("snapshotId")}

    def describe(snapshot_id: str) -> dict[str, Any] | None:
        v = by_id.get(snapshot_id)
        return {"files": v.get("files") or 0, "bytes": v.get("bytes") or 0} if v else None

    return describe


# A run's registration on a copy it uses: ``dr.dev/user.<run>-<random>: <unix time it expires>``.
USER_ANNOTATION = "dr.dev/user."
# Each conflict is another run's completed write, so a few re-reads settle it.
COPY_ATTEMPTS = 10


def _user_key(token: str) -> str:
    return USER_ANNOTATION + (label_value(token)[: 63 - len("user.")].strip("-_.") or "run")


def _copy_expiry(obj: dict[str, Any]) -> int | None:
    """The ``dr.dev/expires`` of a copy dr made; None for any other object (the user's own: never touched)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if labels.get(MOVER_LABEL) != "true":
        return None
    try:
        return int(labels.get(EXPIRES_LABEL, ""))
    except ValueError:
        return None


def _users(obj: dict[str, Any], expires: int) -> dict[str, int]:
    """The runs registered on a copy: annotation key -> expiry (unreadable: expired).

    A copy without registrations was made by a dr that did not count its users: its
    creator (``dr.dev/run``) counts as one until the copy's ``dr.dev/expires``.
    """
    meta = obj.get("metadata") or {}
    users: dict[str, int] = {}
    for key, value in (meta.get("annotations") or {}).items():
        if key.startswith(USER_ANNOTATION):
            try:
                users[key] = int(value)
            except ValueError:
                users[key] = 0
    return users or {_user_key((meta.get("labels") or {}).get(RUN_LABEL, "")): expires}


def _data_update(copy: dict[str, Any], source: dict[str, Any] | None) -> dict[str, Any]:
    """The merge patch bringing a copy's ``data`` and ``binaryData`` to its source's: keys the source no
    longer has removed, the others set. Empty when they are equal, or when the source is gone (a copy
    is used as it is rather than emptied)."""
    if source is None:
        return {}
    change: dict[str, Any] = {}
    for field in ("data", "binaryData"):
        old, new = copy.get(field) or {}, source.get(field) or {}
        if old != new:
            change[field] = {**dict.fromkeys(old), **new}
    return change


def _raced(e: ApiError) -> bool:
    """Another run changed (409) or deleted (404) the copy between our read and our write: read again."""
    return e.status in (404, 409)


class MoverConfigCopies:
    """Copies of dr-config and the credentials Secret in namespaces where restore movers run, deleted afterwards.

    ``credentials=False``: dr-config only, for movers that do not open the repository (data probes).

    Runs at the same time in one namespace (a restore, a drill, ``dr runbook verify``) share a copy:
    each registers itself on it (``USER_ANNOTATION``, with the expiry of its temporary objects, so a
    killed run does not keep the copy forever), whether it made the copy or found it, and the last
    one out deletes it. Every write is conditional on the version read; a conflict is read again.
    A run that registers on a copy also brings its data up to the source's (the credentials may have
    been rotated, dr-config edited, since the copy was made).
    An identity that may not patch (registering is a patch; dr's restore and drill roles may) uses a
    copy it found unregistered, with a warning: the run that made it may delete it first.
    An object without dr's labels is the user's own: used, never changed or deleted.
    """

    def __init__(
        self,
        kube: KubeClient,
        mover: MoverOptions,
        run_id: str,
        now: float | None = None,
        *,
        credentials: bool = True,
    ) -> None:
        self.kube = kube
        self.mover = mover
        self.credentials = credentials
        # Registrations last as long as every temporary object of the run: the Jobs' deadline plus a margin.
        self.expires = expiry(now or time.time(), mover.deadline)
        self.labels = temporary_labels(run_id, self.expires)
        # Random per instance: two runs with the same id (a runbook verified twice at once) stay two users.
        self.user = _user_key(f"{label_value(run_id)[:40]}-{secrets.token_hex(4)}")
        self.made: list[tuple[ApiResource, str, str]] = []

    def ensure(self, namespace: str) -> None:
        """Copy what ``namespace`` lacks, register on the copies there; problems are logged (the mover
        check then names what is missing)."""
        if namespace == self.mover.namespace:
            return
        wanted = [(CONFIG_MAPS, CONFIG_MAP)]
        if self.mover.credentials_secret and self.credentials:
            wanted.append((SECRETS, self.mover.credentials_secret))
        for res, name in wanted:
            try:
                if self._register(res, namespace, name):
                    self.made.append((res, namespace, name))
            except ApiError as e:
                log.warning("cannot copy %s %s/%s into %s for the restore movers: %s",
                            res.kind, self.mover.namespace, name, namespace, e.short)  # fmt: skip

    def _register(self, res: ApiResource, namespace: str, name: str) -> bool:
        """Make the copy or register on the one there. True: the cleanup looks at it; False: not ours to
        remove (none, or the user's)."""
        for _ in range(COPY_ATTEMPTS):
            present = get_object(self.kube, res, namespace, name)
            expires = None if present is None else _copy_expiry(present)
            if present is not None and expires is None:
                return False  # the user's own: used, never changed
            # The source is read after the copy, at every attempt: a registration is conditional on the
            # copy's version, so the source it writes is at least as new as the one any earlier write
            # to that copy read. A run that read the source before the user rotated the credentials
            # cannot put the old ones back.
            try:
                source = get_object(self.kube, res, self.mover.namespace, name)
            except ApiError as e:
                if e.status != 403 or present is None:
                    raise
                # An identity that may register on the copy but not read dr's own (it uses copies
                # others make): it registers, and the data stays as the copy has it.
                log.debug("cannot read %s %s/%s (%s): the copy in %s is not brought up to date",
                          res.kind, self.mover.namespace, name, e.short, namespace)  # fmt: skip
                source = None
            if present is None or expires is None:  # no copy yet (expires is None only then: named for mypy)
                if source is None:
                    return False
                if self._create(res, source, namespace, name):
                    return True
                continue  # another run made it meanwhile: register on it
            update = _data_update(present, source)
            change = {**self._registration(present, expires), **update}
            if source is not None and source.get("type") != present.get("type"):
                # Not patched: ConfigMaps have no type and a Secret's cannot change (the API server refuses,
                # and the registration would fail every time). envFrom ignores it; the copy keeps its own.
                log.debug("the copy of %s %s in %s keeps its type %s (the source's is %s)",
                          res.kind, name, namespace, present.get("type"), source.get("type"))  # fmt: skip
            try:
                kapply.patch(self.kube, res, namespace, name, change)
                if update:
                    # Names only: never the values (credentials).
                    log.info("brought the copy of %s %s in %s up to date with %s/%s",
                             res.kind, name, namespace, self.mover.namespace, name)  # fmt: skip
                return True
            except ApiError as e:
                if e.status == 403:
                    # An identity that may make and delete copies but not patch them: the copy is used
                    # unregistered. The cleanup deletes it if no one else is registered (a killed run's
                    # leftover), and leaves it (without a write) to the runs that are.
                    log.warning("cannot register on the copy of %s %s in %s (%s): used unregistered, the run "
                                "that made it may delete it before this one is done%s",
                                res.kind, name, namespace, e.short,
                                "; its data is older than the source's" if update else "")  # fmt: skip
                    return True
                if not _raced(e):
                    raise
        log.warning("cannot register on the copy of %s %s in %s: it kept changing", res.kind, name, namespace)
        return False

    def _create(self, res: ApiResource, source: dict[str, Any], namespace: str, name: str) -> bool:
        """Make the copy of ``source`` in ``namespace``, registered: True; False when another run
        made one first."""
        try:
            kapply.create(self.kube, res, self._copy_of(res, source, namespace, name))
            return True
        except ApiError as e:
            if e.already_exists:
                return False
            # Stored all the same if only the answer was lost (every attempt cut off): the
            # cleanup looks, so a copy of the credentials is not left behind unknown. One
            # that is not there, or not this run's alone, it leaves.
            self.made.append((res, namespace, name))
            raise

    def _registration(self, present: dict[str, Any], expires: int) -> dict[str, Any]:
        """The merge patch registering this run on ``present``, conditional on the version read.

        Expired registrations (killed runs) go; the creator implied on a copy without any is
        written out. (The caller adds the data update: the copy may be older than the source,
        the user having rotated the credentials or edited dr-config while an earlier run had
        it. Safe for the movers already running on it: the Secret reaches them as environment
        variables (envFrom), read when the container starts, and dr.yaml is read once when the
        mover starts (the kubelet swaps a projected file whole); only movers started after
        this write see the new data.)"""
        now = time.time()
        users: dict[str, str | None] = {
            k: str(until) if until >= now else None for k, until in _users(present, expires).items()
        }
        users[self.user] = str(self.expires)
        return {"metadata": {"resourceVersion": present["metadata"].get("resourceVersion"), "annotations": users,
                             "labels": {EXPIRES_LABEL: str(max(expires, self.expires))}}}  # fmt: skip

    def _copy_of(self, res: ApiResource, source: dict[str, Any], namespace: str, name: str) -> dict[str, Any]:
        copy: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": res.kind,
            "metadata": {"name": name, "namespace": namespace, "labels": self.labels,
                         "annotations": {"dr.dev/copied-from": f"{self.mover.namespace}/{name}",
                                         self.user: str(self.expires)}},
        }  # fmt: skip
        for key in ("type", "data", "binaryData"):
            if key in source:
                copy[key] = source[key]
        return copy

    def delete_all(self) -> list[str]:
        """Unregister from every copy this run used; delete those no other unexpired run is registered on."""
        problems = []
        for res, namespace, name in reversed(self.made):
            try:
                if not self._unregister(res, namespace, name):
                    problems.append(
                        f"cannot delete the copy of {res.kind} {name} in {namespace}: it kept changing"
                    )
            except ApiError as e:
                problems.append(f"cannot delete the copy of {res.kind} {name} in {namespace}: {e.short}")
        self.made.clear()
        return problems

    def _unregister(self, res: ApiResource, namespace: str, name: str) -> bool:
        for _ in range(COPY_ATTEMPTS):
            present = get_object(self.kube, res, namespace, name)
            expires = None if present is None else _copy_expiry(present)
            if present is None or expires is None:
                return True  # gone, or replaced by the user's own object meanwhile
            now = time.time()
            users = _users(present, expires)
            others = [k for k, until in users.items() if k != self.user and until >= now]
            if others and self.user not in users:
                return True  # never registered (or taken off as expired): nothing to take off
            meta = present["metadata"]
            try:
                if others:
                    change = {"metadata": {"resourceVersion": meta.get("resourceVersion"),
                                           "annotations": {self.user: None}}}  # fmt: skip
                    kapply.patch(self.kube, res, namespace, name, change)
                else:
                    kapply.delete(self.kube, res, namespace, name, uid=meta.get("uid"),
                                  resource_version=meta.get("resourceVersion"))  # fmt: skip
                return True
            except ApiError as e:
                if not _raced(e):
                    raise
        return False


class ConfigCopyingProbe:
    """A ``DataProbe`` for namespaces that may lack dr-config (an app's own, after a real restore).

    The probe Job mounts dr-config of its own namespace; ``dr restore`` removed its copies
    again. Before the first probe in a namespace it copies dr-config there (``copies``, made
    with ``credentials=False``: a probe does not open the repository; the caller deletes them
    with ``copies.delete_all()``). Where there is none all the same, the data step fails at
    once, saying why, instead of with a probe pod that cannot start.
    """

    def __init__(self, kube: KubeClient, probe: DataProbe, copies: MoverConfigCopies) -> None:
        self.kube = kube
        self.probe = probe
        self.copies = copies
        self._present: dict[str, bool] = {}

    def __call__(
        self, namespace: str, pvc: str, paths: Sequence[str], *, timeout: float, warnings: list[str]
    ) -> Mapping[str, PathProbe]:
        if namespace not in self._present:
            self.copies.ensure(namespace)
            self._present[namespace] = get_object(self.kube, CONFIG_MAPS, namespace, CONFIG_MAP) is not None
        if not self._present[namespace]:
            raise ProbeError(
                f"the probe Job needs the ConfigMap {CONFIG_MAP} in {namespace}, and it could not be "
                f"copied there from {self.copies.mover.namespace}"
            )
        return self.probe(namespace, pvc, paths, timeout=timeout, warnings=warnings)


def restore_backup_dumps(
    kube: KubeClient,
    repo: Repository,
    snap: Snapshot,
    namespace_mapping: dict[str, str],
    *,
    exec_: Exec | None = None,
    timeout: float = 300.0,
    poll: float = 2.0,
) -> list[HookResult]:
    """Load the backup's dumps into the restored pods that ask for them (after the workloads are running).

    Waits up to ``timeout`` until, for every dump, a running pod in the
    (mapped) namespace declares a restore hook for it; then
    ``dr.backup.hooks.restore_dumps`` streams each dump into its pod. A
    dump no running pod asks for is reported as skipped.
    """
    records = dump_records(snap)
    if not records:
        return []
    targets = sorted({namespace_mapping.get(r.namespace, r.namespace) for r in records})
    deadline = time.monotonic() + timeout
    while True:
        pods = [p for ns in targets for p in list_objects(kube, PODS, namespace=ns)]
        asking = set()
        for p in pods:
            try:
                hook = restore_hook_of(p)
            except DrError:
                continue  # restore_dumps reports the malformed annotation
            if hook is not None and (p.get("status") or {}).get("phase") == "Running":
                asking.add(f"{hook.namespace}/{hook.name}")
        missing = [
            r for r in records if f"{namespace_mapping.get(r.namespace, r.namespace)}/{r.name}" not in asking
        ]
        if not missing or time.monotonic() >= deadline:
            break
        time.sleep(poll)
    return restore_dumps(exec_ or KubernetesExec(kube), repo, records, pods, namespace_mapping)


def dump_problems(
    kube: KubeClient, repo: Repository, snap: Snapshot, namespace_mapping: dict[str, str], timeout: float
) -> list[str]:
    """``restore_backup_dumps`` for drills: the dumps that were not loaded, one line each."""
    results = restore_backup_dumps(kube, repo, snap, namespace_mapping, timeout=timeout)
    return [r.describe() for r in results if not r.ok or r.skipped]
