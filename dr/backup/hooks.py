"""Application-consistency hooks: commands run in application pods around and alongside a backup.

Three kinds, all run through the ``dr.kube.exec.Exec`` seam:

* **pre/post hooks** (freeze/thaw, flush, checkpoint) around the copy of a
  pod's volumes. Declared on the pod with Velero-style annotations under
  ``dr.dev`` — ``pre.hook.backup.dr.dev/command`` (a JSON array of strings, or
  a plain string run with ``/bin/sh -c``), ``…/container`` (default: the
  pod's first container), ``…/on-error`` (``fail`` | ``continue``, default
  ``fail``), ``…/timeout`` (``30s``, default 30 s), same with ``post.`` — and
  by backup policies (``PodHooks``: a label selector and lists of ``Hook``).
  Annotation hooks run first, then policy hooks in policy order.
  Semantics (``run_pre``/``run_post``): pre hooks run in order until one with
  ``onError: fail`` fails — then the pod's volumes are not backed up and
  the reason is reported; post hooks run whenever a pre hook ran (a half
  frozen application must be thawed), all of them, even after failures.
  A ``continue`` failure is a warning. Pods that are not Running are skipped
  (nothing to freeze).
* **dump hooks**: ``dump.hook.backup.dr.dev/command`` (+ ``/container``,
  ``/name`` default ``dump``, ``/timeout`` default 1 h) runs a command whose
  stdout (``pg_dump``, ``mysqldump``, ``redis-cli --rdb -``) is streamed into
  the repository as a stream of the backup, chunk by chunk, never whole in
  memory: ``run_dump`` returns a ``DumpRecord`` (the ``Stream`` plus namespace,
  pod, container, name, size and sha256) for the backup to keep.
* **restore hooks**: ``restore.hook.dr.dev/command`` (+ ``/container``,
  ``/name`` of the dump to load, ``/timeout``) on a restored pod, or given
  explicitly: ``restore_dump`` streams the dump back into the command's stdin
  and checks size and sha256 of what was sent.

A malformed annotation is a hook failure of that pod naming the annotation
and the problem (with ``fail`` semantics: a typo must not silently skip a
freeze).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from dr.config import Hook, PodHooks
from dr.cron import parse_duration
from dr.errors import DrError
from dr.interrupt import stopping
from dr.kube.exec import Exec, ExecError, ExecTimeout, describe_target
from dr.kube.objects import metadata
from dr.kube.selectors import parse_selector
from dr.redact import WINDOW, redact, redact_argv
from dr.repo.repository import Repository, Saver
from dr.repo.snapshots import Stream
from dr.repo.streams import StreamWriter, read_stream

log = logging.getLogger(__name__)

PRE = "pre.hook.backup.dr.dev"
POST = "post.hook.backup.dr.dev"
DUMP = "dump.hook.backup.dr.dev"
RESTORE = "restore.hook.dr.dev"
DEFAULT_TIMEOUT = timedelta(seconds=30)
DEFAULT_DUMP_TIMEOUT = timedelta(hours=1)
DEFAULT_DUMP_NAME = "dump"
STDERR_TAIL = 400

Phase = Literal["pre", "post", "dump", "restore"]


class HookError(DrError):
    """A hook could not be declared or run (bad annotation, exec failure, non-zero exit)."""


# --------------------------------------------------------------------------- declaring hooks


def pod_key(pod: dict[str, Any]) -> tuple[str, str]:
    meta = metadata(pod)
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def default_container(pod: dict[str, Any]) -> str | None:
    containers = (pod.get("spec") or {}).get("containers") or []
    return str(containers[0].get("name")) if containers else None


def pod_running(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and not metadata(pod).get("deletionTimestamp")


def parse_command(value: str, annotation: str) -> list[str]:
    """A JSON array of strings, or a plain string run by ``/bin/sh -c``."""
    text = value.strip()
    if not text:
        raise HookError(f"annotation {annotation}: empty command")
    if text.startswith("["):
        try:
            argv = json.loads(text)
        except ValueError as e:
            raise HookError(f"annotation {annotation}: not a JSON array: {e}") from None
        if not argv or not all(isinstance(a, str) for a in argv):
            raise HookError(f"annotation {annotation}: must be a non-empty JSON array of strings")
        return list(argv)
    return ["/bin/sh", "-c", text]


def _parse_timeout(value: str | None, annotation: str, default: timedelta) -> timedelta:
    if value is None or not value.strip():
        return default
    try:
        return parse_duration(value)
    except ValueError as e:
        raise HookError(f"annotation {annotation}: {e}") from None


def _parse_on_error(value: str | None, annotation: str) -> Literal["fail", "continue"]:
    v = (value or "fail").strip().lower()
    if v not in ("fail", "continue"):
        raise HookError(f"annotation {annotation}: {value!r} is not fail or continue")
    return "fail" if v == "fail" else "continue"


def annotation_hook(
    pod: dict[str, Any], prefix: str, default_timeout: timedelta = DEFAULT_TIMEOUT
) -> Hook | None:
    """The hook a pod declares under ``prefix`` (``pre.hook.backup.dr.dev`` …), or None; ``HookError`` if malformed."""
    ann = metadata(pod).get("annotations") or {}
    command = ann.get(f"{prefix}/command")
    if command is None:
        return None
    return Hook(
        name=ann.get(f"{prefix}/name") or "annotation",
        container=ann.get(f"{prefix}/container") or None,
        command=parse_command(str(command), f"{prefix}/command"),
        timeout=_parse_timeout(ann.get(f"{prefix}/timeout"), f"{prefix}/timeout", default_timeout),
        on_error=_parse_on_error(ann.get(f"{prefix}/on-error"), f"{prefix}/on-error"),
    )


@dataclass
class PodHookSet:
    """The pre and post hooks of one pod (annotations first, then matching policy hooks)."""

    namespace: str
    pod: str
    running: bool
    default_container: str | None
    pre: list[Hook] = field(default_factory=list)
    post: list[Hook] = field(default_factory=list)
    problem: str | None = None  # a malformed annotation: the pod's volumes fail

    @property
    def empty(self) -> bool:
        return not self.pre and not self.post and self.problem is None


def hooks_for_pod(pod: dict[str, Any], policy_hooks: list[PodHooks]) -> PodHookSet:
    ns, name = pod_key(pod)
    hs = PodHookSet(ns, name, pod_running(pod), default_container(pod))
    try:
        for prefix, target in ((PRE, hs.pre), (POST, hs.post)):
            h = annotation_hook(pod, prefix)
            if h is not None:
                target.append(h)
    except HookError as e:
        hs.problem = f"pod {ns}/{name}: {e.message}"
    labels = metadata(pod).get("labels") or {}
    for ph in policy_hooks:
        if parse_selector(ph.selector).matches(labels):
            hs.pre += ph.pre
            hs.post += ph.post
    return hs


# --------------------------------------------------------------------------- running hooks


class HookResult(BaseModel):
    """One hook run (or skip), as recorded in the backup or restore results."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    phase: Phase
    namespace: str
    pod: str
    container: str | None = None
    name: str | None = None
    command: list[str] = []
    on_error: Literal["fail", "continue"] = "fail"
    exit_code: int | None = None
    ok: bool = True
    skipped: bool = False
    note: str | None = None  # why it was skipped
    error: str | None = None
    duration_seconds: float = 0.0

    def describe(self) -> str:
        label = f"{self.phase} hook {self.name!r}" if self.name else f"{self.phase} hook"
        where = describe_target(self.namespace, self.pod, self.container)
        if self.skipped:
            return f"{label} in {where}: skipped ({self.note})"
        return f"{label} in {where}: {self.error}" if self.error else f"{label} in {where}: ok"


def recorded_command(command: Sequence[str]) -> list[str]:
    """A hook's command as results and dump records keep it (in the repository, in
    `dr backups describe`, in reports): secret-looking values masked (``PGPASSWORD=…``,
    ``--password=…``, ``--password …``, a MySQL/MariaDB client's ``-p…``, tokens), as a
    hook's stderr is. What runs is the command as written."""
    return redact_argv(command)


def _stderr_tail(stderr: bytes) -> str:
    """The end of a hook's stderr, for its error: secret-looking values masked
    (``pg_dump``, ``mysql`` or a script may print a password or a token there, and
    the error goes into records, logs and Kubernetes Events). Masked before it
    is cut, so a secret whose name (or PEM header) falls just before the cut is
    masked too; only the last ``WINDOW`` bytes are looked at, which
    bounds the time the patterns take on up to 1 MiB of stderr."""
    text = redact(stderr[-WINDOW:].decode("utf-8", "replace")).strip()
    return text if len(text) <= STDERR_TAIL else "…" + text[-STDERR_TAIL:]


def run_hook(exec_: Exec, hs: PodHookSet, hook: Hook, phase: Phase) -> HookResult:
    """Run one hook; the result says whether it failed and why (never raises for the hook's own failure)."""
    container = hook.container or hs.default_container
    res = HookResult(
        phase=phase,
        namespace=hs.namespace,
        pod=hs.pod,
        container=container,
        name=hook.name,
        command=recorded_command(hook.command),
        on_error=hook.on_error,
    )
    timeout = hook.timeout.total_seconds()
    start = time.monotonic()
    try:
        out = exec_.run(hs.namespace, hs.pod, container, list(hook.command), timeout)
    except ExecTimeout:
        res.ok, res.error = False, f"timed out after {timeout:g}s"
    except ExecError as e:
        res.ok, res.error = False, e.message
    except Exception as e:
        res.ok, res.error = False, unexpected(e)
    else:
        res.exit_code = out.exit_code
        if out.exit_code != 0:
            tail = _stderr_tail(out.stderr)
            res.ok, res.error = False, f"exit code {out.exit_code}" + (f": {tail}" if tail else "")
    res.duration_seconds = round(time.monotonic() - start, 3)
    return res


def unexpected(err: Exception) -> str:
    """A failure that is not an ``ExecError`` (a bug, a client library's own exception), for a hook's result.

    The type and the message of a ``DrError`` (built never to hold a secret);
    of any other exception only its type: its text may quote a request (the
    debug log, redacted, has the traceback).
    """
    log.debug("hook failed unexpectedly", exc_info=err)
    if isinstance(err, DrError):
        return err.message
    return f"exec failed: {type(err).__name__} (run with -vv for details)"


@dataclass
class HookRun:
    """Results of one phase for a set of pods, and the first fatal failure (``onError: fail``), if any."""

    results: list[HookResult] = field(default_factory=list)
    fatal: str | None = None
    ran: bool = False  # some hook was attempted (post hooks are then due)

    @property
    def warnings(self) -> list[str]:
        return [r.describe() for r in self.results if not r.ok and r.on_error == "continue"]


def run_pre(exec_: Exec, hooksets: list[PodHookSet], run: HookRun | None = None) -> HookRun:
    """Pre hooks of every pod, in order, stopping at the first ``fail`` failure.

    Fills ``run`` if given: when an interrupt ends this call, the caller still
    knows whether a pre hook started (``run.ran``), so post hooks are due.
    """
    run = HookRun() if run is None else run
    for hs in hooksets:
        if hs.problem:
            run.fatal = hs.problem
            return run
        for hook in hs.pre:
            if not hs.running:
                run.results.append(_skipped(hs, hook, "pre"))
                continue
            if stopping():  # SIGTERM or Ctrl-C: freeze nothing more; what is frozen gets thawed
                run.fatal = "interrupted: dr is stopping"
                return run
            run.ran = True
            res = run_hook(exec_, hs, hook, "pre")
            run.results.append(res)
            if not res.ok and hook.on_error == "fail":
                run.fatal = res.describe()
                return run
    return run


def run_post(exec_: Exec, hooksets: list[PodHookSet]) -> HookRun:
    """Every post hook of every pod (a failure does not stop the others: all must thaw)."""
    run = HookRun()
    for hs in hooksets:
        for hook in hs.post:
            if not hs.running:
                run.results.append(_skipped(hs, hook, "post"))
                continue
            run.ran = True
            res = run_hook(exec_, hs, hook, "post")
            run.results.append(res)
            if not res.ok and hook.on_error == "fail" and run.fatal is None:
                run.fatal = res.describe()
    return run


def _skipped(hs: PodHookSet, hook: Hook, phase: Phase) -> HookResult:
    return HookResult(
        phase=phase,
        namespace=hs.namespace,
        pod=hs.pod,
        container=hook.container or hs.default_container,
        name=hook.name,
        command=recorded_command(hook.command),
        on_error=hook.on_error,
        skipped=True,
        note="pod is not running",
    )


# --------------------------------------------------------------------------- dump hooks


@dataclass(frozen=True)
class DumpHook:
    namespace: str
    pod: str
    container: str | None
    name: str
    command: list[str]
    timeout: timedelta


class DumpRecord(BaseModel):
    """A dump stored in the repository: where it came from and how to check it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    namespace: str
    pod: str
    container: str | None = None
    name: str
    command: list[str]
    size: int
    sha256: str
    stream: Stream
    duration_seconds: float = 0.0

    @property
    def key(self) -> str:
        """``namespace/pod/name``: the stream's name in the backup."""
        return f"{self.namespace}/{self.pod}/{self.name}"


def dump_hook_of(pod: dict[str, Any]) -> DumpHook | None:
    """The dump a pod declares (``dump.hook.backup.dr.dev/…``), or None; ``HookError`` if malformed."""
    hook = annotation_hook(pod, DUMP, DEFAULT_DUMP_TIMEOUT)
    if hook is None:
        return None
    ns, name = pod_key(pod)
    dump_name = hook.name if hook.name and hook.name != "annotation" else DEFAULT_DUMP_NAME
    return DumpHook(ns, name, hook.container or default_container(pod), dump_name, hook.command, hook.timeout)


def run_dump(exec_: Exec, repo: Repository, saver: Saver, hook: DumpHook) -> DumpRecord:
    """Stream the dump command's stdout into the repository; ``HookError`` when it fails.

    On failure the blobs written so far stay unreferenced (prune removes them).
    """
    writer = StreamWriter(repo, saver)
    digest = hashlib.sha256()

    def sink(data: bytes) -> None:
        digest.update(data)
        writer.write(data)

    where = f"dump hook {hook.name!r} in {describe_target(hook.namespace, hook.pod, hook.container)}"
    timeout = hook.timeout.total_seconds()
    start = time.monotonic()
    try:
        out = exec_.run(
            hook.namespace, hook.pod, hook.container, list(hook.command), timeout, stdout_sink=sink
        )
    except ExecTimeout:
        raise HookError(f"{where}: timed out after {timeout:g}s") from None
    except ExecError as e:
        raise HookError(f"{where}: {e.message}") from None
    except Exception as e:
        raise HookError(f"{where}: {unexpected(e)}") from None
    if out.exit_code != 0:
        tail = _stderr_tail(out.stderr)
        raise HookError(f"{where}: exit code {out.exit_code}" + (f": {tail}" if tail else ""))
    stream = writer.close()
    return DumpRecord(
        namespace=hook.namespace,
        pod=hook.pod,
        container=hook.container,
        name=hook.name,
        command=recorded_command(hook.command),
        size=stream.size,
        sha256=digest.hexdigest(),
        stream=stream,
        duration_seconds=round(time.monotonic() - start, 3),
    )


@dataclass
class DumpOutcome:
    records: list[DumpRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def run_dump_hooks(exec_: Exec, repo: Repository, saver: Saver, pods: list[dict[str, Any]]) -> DumpOutcome:
    """The dumps of every running pod that declares one; each failure is an error line, the rest goes on."""
    outcome = DumpOutcome()
    for pod in pods:
        ns, name = pod_key(pod)
        try:
            hook = dump_hook_of(pod)
        except HookError as e:
            outcome.errors.append(f"pod {ns}/{name}: {e.message}")
            continue
        if hook is None:
            continue
        if not pod_running(pod):
            outcome.errors.append(f"dump hook {hook.name!r} in pod {ns}/{name}: pod is not running")
            continue
        try:
            outcome.records.append(run_dump(exec_, repo, saver, hook))
        except HookError as e:
            outcome.errors.append(e.message)
    return outcome


# --------------------------------------------------------------------------- restore hooks


@dataclass(frozen=True)
class RestoreHook:
    """Where and how a dump is loaded: a command that reads the dump on stdin."""

    namespace: str
    pod: str
    container: str | None
    command: list[str]
    timeout: timedelta = DEFAULT_DUMP_TIMEOUT
    name: str = DEFAULT_DUMP_NAME  # which dump of the backup this pod loads


def restore_hook_of(pod: dict[str, Any]) -> RestoreHook | None:
    """The restore hook a restored pod declares (``restore.hook.dr.dev/…``), or None; ``HookError`` if malformed."""
    hook = annotation_hook(pod, RESTORE, DEFAULT_DUMP_TIMEOUT)
    if hook is None:
        return None
    ns, name = pod_key(pod)
    dump_name = hook.name if hook.name and hook.name != "annotation" else DEFAULT_DUMP_NAME
    return RestoreHook(
        ns, name, hook.container or default_container(pod), hook.command, hook.timeout, dump_name
    )


class _CheckedStream:
    """The dump's bytes for stdin, counting and hashing what was handed out."""

    def __init__(self, repo: Repository, record: DumpRecord) -> None:
        self._chunks = read_stream(repo, record.stream)
        self.size = 0
        self.digest = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.size += len(chunk)
            self.digest.update(chunk)
            yield chunk


def restore_dump(exec_: Exec, repo: Repository, record: DumpRecord, hook: RestoreHook) -> HookResult:
    """Stream dump ``record`` into ``hook``'s command; the result says whether it was loaded."""
    res = HookResult(
        phase="restore",
        namespace=hook.namespace,
        pod=hook.pod,
        container=hook.container,
        name=record.name,
        command=recorded_command(hook.command),
    )
    source = _CheckedStream(repo, record)
    timeout = hook.timeout.total_seconds()
    start = time.monotonic()
    try:
        out = exec_.run(hook.namespace, hook.pod, hook.container, list(hook.command), timeout, stdin=source)
    except ExecTimeout:
        res.ok, res.error = False, f"timed out after {timeout:g}s"
    except ExecError as e:
        res.ok, res.error = False, e.message
    except DrError as e:  # reading the stream from the repository failed
        res.ok, res.error = False, f"reading dump {record.key}: {e.message}"
    except Exception as e:
        res.ok, res.error = False, unexpected(e)
    else:
        res.exit_code = out.exit_code
        if out.exit_code != 0:
            tail = _stderr_tail(out.stderr)
            res.ok, res.error = False, f"exit code {out.exit_code}" + (f": {tail}" if tail else "")
        elif source.size != record.size or source.digest.hexdigest() != record.sha256:
            res.ok = False
            res.error = (
                f"the command ended after reading {source.size} of {record.size} bytes of dump {record.key}"
                if source.size != record.size
                else f"dump {record.key} does not match its recorded sha256"
            )
    res.duration_seconds = round(time.monotonic() - start, 3)
    return res


def restore_dumps(
    exec_: Exec,
    repo: Repository,
    records: list[DumpRecord],
    pods: list[dict[str, Any]],
    namespace_mapping: dict[str, str] | None = None,
) -> list[HookResult]:
    """Load each dump into the restored pod that asks for it.

    For a dump of ``ns/pod``, the candidates are the running pods in the
    (mapped) namespace with a restore hook for the dump's name; the pod of the
    same name is preferred (StatefulSets keep names), else the first by name.
    A dump nobody asks for is reported as skipped; a malformed annotation or
    a missing pod is a failed result.
    """
    mapping = namespace_mapping or {}
    hooks: dict[str, list[RestoreHook]] = {}
    problems: list[HookResult] = []
    for pod in sorted(pods, key=pod_key):
        ns, name = pod_key(pod)
        try:
            hook = restore_hook_of(pod)
        except HookError as e:
            problems.append(HookResult(phase="restore", namespace=ns, pod=name, ok=False, error=e.message))
            continue
        if hook is not None and pod_running(pod):
            hooks.setdefault(f"{ns}/{hook.name}", []).append(hook)
    results = list(problems)
    for rec in records:
        target_ns = mapping.get(rec.namespace, rec.namespace)
        candidates = hooks.get(f"{target_ns}/{rec.name}", [])
        if not candidates:
            results.append(
                HookResult(
                    phase="restore",
                    namespace=target_ns,
                    pod=rec.pod,
                    name=rec.name,
                    skipped=True,
                    note=f"no running pod in {target_ns} has a restore hook for dump {rec.name!r}",
                )
            )
            continue
        chosen = next((h for h in candidates if h.pod == rec.pod), candidates[0])
        results.append(restore_dump(exec_, repo, rec, chosen))
    return results
