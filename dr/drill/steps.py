"""Running a runbook's verification steps against a restored namespace: a drill's scratch namespace,
or a live one after a real restore (``dr runbook verify``, ``dr.drill.verify``).

``run_step(step, ctx)`` carries out one step of ``dr.runbook.model`` and
returns a ``StepResult``: passed or not, why in one line, how long it took,
and details for the report. It never raises for what happens in the cluster:
an API error or an impossible exec becomes a failed result with ``error``
set, so one broken step cannot lose the results of the others.

Everything a step needs comes in through ``StepContext``: the kubernetes
``ApiClient`` (used raw, see ``dr.drill.api``), the namespace(s) to check,
the ``Exec`` and ``DataProbe`` implementations and a ``Clock``. Steps that
wait for the cluster (``resources``, ``ready``, ``http``, ``exec``'s pod,
``job``) poll until they pass or their ``timeout`` passes; the clock is
injected so tests can drive time instead of sleeping.
"""

from __future__ import annotations

import dataclasses
import json
import math
import secrets
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import urllib3
from kubernetes import client as kclient

from dr.drill.api import Discovery, StepApiError, list_items, request, unreachable
from dr.drill.bounded_regex import REGEX_SECONDS, RegexTimeout, search_within, unfinished_match
from dr.drill.model import StepResult, human_duration
from dr.drill.probe import DataProbe, PathProbe, ProbeError
from dr.errors import DrError
from dr.kube.exec import MAX_OUTPUT, Exec, ExecError
from dr.printable import printable
from dr.redact import redact, redact_argv, redacted_head, redacted_tail
from dr.runbook.model import (
    DataStep,
    ExecStep,
    HttpExpect,
    HttpStep,
    JobStep,
    ReadyStep,
    ResourcesStep,
    VerificationStep,
    parse_json_path,
    workload_ref,
)
from dr.urls import redact_url

# API answers worth waiting out while a step polls (API server busy or restarting).
_TRANSIENT = {0, 429, 500, 502, 503, 504}
_MAX_MESSAGE = 400
_BODY_EXCERPT = 300
# What an http step reads of a body at most: a health page or an API answer is far smaller.
MAX_BODY = 1 << 20
# Redirects an http step follows in a row within its service (a browser follows about 20).
MAX_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}
MANAGED_BY = {"app.kubernetes.io/managed-by": "dr"}


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...
    def now(self) -> datetime: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class StepContext:
    api: kclient.ApiClient
    namespace: str  # the namespace steps check by default (a drill's scratch namespace)
    exec: Exec
    data_probe: DataProbe
    clock: Clock = field(default_factory=SystemClock)
    # Source namespace (as named in the runbook) -> the one to check, for steps naming one.
    namespaces: Mapping[str, str] = field(default_factory=dict)
    poll_interval: float = 2.0
    # Labels put on objects steps create (Jobs), e.g. the drill id, so gc can find leftovers.
    labels: Mapping[str, str] = field(default_factory=dict)
    # What the running step could not check without failing (a data probe placed on no node):
    # its result's warnings. ``run_step`` gives each step a list of its own.
    warnings: list[str] = field(default_factory=list)
    # ``clock.monotonic()`` time by which every step must end (a drill's ``spec.drill.timeout``) and
    # that timeout as the runbook gives it: a step's own longer timeout is cut to what is left.
    deadline: float | None = None
    deadline_of: timedelta | None = None
    _discovery: Discovery | None = field(default=None, repr=False)

    def discovery(self) -> Discovery:
        if self._discovery is None:
            self._discovery = Discovery(self.api)
        return self._discovery

    def target_namespace(self, step: VerificationStep) -> str:
        if step.namespace is None:
            return self.namespace
        try:
            return self.namespaces[step.namespace]
        except KeyError:
            raise StepApiError(f"no scratch namespace for source namespace {step.namespace!r}") from None


@dataclass
class Verdict:
    passed: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    final: bool = False  # a failure that waiting cannot fix


def run_step(step: VerificationStep, ctx: StepContext) -> StepResult:
    """Run one verification step; always returns a result (see module doc)."""
    start = ctx.clock.monotonic()
    error: str | None = None
    # Kept also when the step fails: what it could not check may be why.
    ctx.warnings = []
    step, cut = _within_deadline(step, ctx, start)
    try:
        verdict = _RUNNERS[step.type](step, ctx)
    except StepApiError as e:
        error = e.message
        verdict = Verdict(False, e.message, e.step_details or {})
    except (ExecError, ProbeError) as e:
        error = e.message
        verdict = Verdict(False, e.message)
    except DrError as e:
        error = e.message
        verdict = Verdict(False, e.message)
    except Exception as e:  # a bug in one step must not lose the others' results
        error = f"internal error: {type(e).__name__}: {e}"
        verdict = Verdict(False, error)
    if cut and not verdict.passed:
        verdict.message = (
            f"the drill's timeout ({human_duration(ctx.deadline_of)}) ran out: {verdict.message}"
        )
    return StepResult(
        name=step.name,
        type=step.type,
        passed=verdict.passed,
        message=_one_line(verdict.message),
        duration=timedelta(seconds=max(0.0, ctx.clock.monotonic() - start)),
        details=verdict.details,
        error=_one_line(error) if error else None,
        warnings=ctx.warnings,
    )


def _within_deadline(step: VerificationStep, ctx: StepContext, now: float) -> tuple[VerificationStep, bool]:
    """``step`` with its timeout cut to what is left before ``ctx.deadline`` (at least one try is
    still made: a check that passes at once passes), and whether it was cut."""
    if ctx.deadline is None:
        return step, False
    left = timedelta(seconds=max(0.0, ctx.deadline - now))
    if left >= step.timeout:
        return step, False
    return step.model_copy(update={"timeout": left}), True


def _one_line(text: str) -> str:
    """``text`` in one line of printable characters: what is quoted of a check's output (a terminal
    escape, a bidi override) reaches terminals and reports escaped (``\\x1b``), not as itself."""
    line = printable(" ".join(text.split()), strict=True)
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 1] + "…"


def _poll(ctx: StepContext, timeout: timedelta, check: Callable[[], Verdict]) -> Verdict:
    """Run ``check`` until it passes, fails for good, or ``timeout`` passes (the last answer says why)."""
    limit = timeout.total_seconds()
    deadline = ctx.clock.monotonic() + limit
    while True:
        try:
            verdict = check()
        except StepApiError as e:
            if e.status not in _TRANSIENT:
                raise
            verdict = Verdict(False, e.message)
        if verdict.passed or verdict.final:
            return verdict
        left = deadline - ctx.clock.monotonic()
        if left <= 0:
            return Verdict(
                False, f"timed out after {human_duration(timeout)}: {verdict.message}", verdict.details
            )
        ctx.clock.sleep(min(ctx.poll_interval, left))


# --------------------------------------------------------------------------- resources


def _resources(step: VerificationStep, ctx: StepContext) -> Verdict:
    assert isinstance(step, ResourcesStep)
    ns = ctx.target_namespace(step)
    disc = ctx.discovery()
    wanted = [(exp, disc.resolve(exp.kind)) for exp in step.expect]

    def check() -> Verdict:
        problems: list[str] = []
        found: dict[str, int] = {}
        for exp, rt in wanted:
            items = list_items(ctx.api, rt.collection(ns), selector=exp.selector)
            label = rt.display + (f" ({exp.selector})" if exp.selector else "")
            found[label] = len(items)
            names = {(i.get("metadata") or {}).get("name") for i in items}
            missing = [n for n in exp.names if n not in names]
            if missing:
                problems.append(f"{label}: {', '.join(missing)} missing")
            if len(items) < exp.min_count:
                problems.append(f"{label}: {len(items)} found, expected at least {exp.min_count}")
        details = {"namespace": ns, "found": found}
        if problems:
            return Verdict(False, f"in {ns}: " + "; ".join(problems), details)
        return Verdict(True, f"in {ns}: " + ", ".join(f"{n} {label}" for label, n in found.items()), details)

    return _poll(ctx, step.timeout, check)


# --------------------------------------------------------------------------- ready

_WORKLOADS: dict[str, tuple[str, str]] = {
    "Deployment": ("/apis/apps/v1", "deployments"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "DaemonSet": ("/apis/apps/v1", "daemonsets"),
    "Job": ("/apis/batch/v1", "jobs"),
}


@dataclass(frozen=True)
class WorkloadState:
    ref: str  # deployment/web
    ready: bool
    state: str  # "2/3 ready", "complete", "failed: BackoffLimitExceeded"
    failed: bool = False


def _int(v: Any, default: int = 0) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else default


def _condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True":
            return dict(c)
    return None


def workload_state(kind: str, obj: Mapping[str, Any]) -> WorkloadState:
    """Whether a workload is ready by the rules of ``ready`` steps (see the runbook docs)."""
    name = (obj.get("metadata") or {}).get("name", "?")
    ref = f"{kind.lower()}/{name}"
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if kind in ("Deployment", "StatefulSet"):
        desired = _int(spec.get("replicas"), 1) if spec.get("replicas") is not None else 1
        ready = _int(status.get("readyReplicas"))
        return WorkloadState(ref, ready >= desired, f"{ready}/{desired} ready")
    if kind == "DaemonSet":
        if status.get("desiredNumberScheduled") is None:
            return WorkloadState(ref, False, "not scheduled yet")
        desired = _int(status.get("desiredNumberScheduled"))
        ready = _int(status.get("numberReady"))
        return WorkloadState(ref, ready >= desired, f"{ready}/{desired} ready")
    if kind == "Job":
        failed = _condition(obj, "Failed")
        if failed is not None:
            return WorkloadState(ref, False, f"failed: {failed.get('reason') or 'Failed'}", failed=True)
        completions = _int(spec.get("completions"), 1) if spec.get("completions") is not None else 1
        succeeded = _int(status.get("succeeded"))
        if _condition(obj, "Complete") is not None or succeeded >= completions:
            return WorkloadState(ref, True, "complete")
        return WorkloadState(ref, False, f"{succeeded}/{completions} completed")
    raise ValueError(f"unknown workload kind {kind!r}")


def _ready(step: VerificationStep, ctx: StepContext) -> Verdict:
    assert isinstance(step, ReadyStep)
    ns = ctx.target_namespace(step)

    def check() -> Verdict:
        states: list[WorkloadState] = []
        seen: set[str] = set()
        for kind in step.kinds:
            base, plural = _WORKLOADS[kind]
            for obj in list_items(ctx.api, f"{base}/namespaces/{ns}/{plural}", selector=step.selector):
                name = str((obj.get("metadata") or {}).get("name"))
                if step.names and name not in step.names:
                    continue
                seen.add(name)
                states.append(workload_state(kind, obj))
        details = {"namespace": ns, "workloads": {s.ref: s.state for s in states}}
        missing = [n for n in step.names if n not in seen]
        if missing:
            kinds = "/".join(k.lower() for k in step.kinds)
            return Verdict(False, f"in {ns}: {kinds} {', '.join(missing)} not found", details, final=True)
        if not states:
            what = ", ".join(step.kinds) + (f" matching {step.selector}" if step.selector else "")
            return Verdict(False, f"no {what} found in {ns}", details, final=True)
        failed = [s for s in states if s.failed]
        if failed:
            return Verdict(False, "; ".join(f"{s.ref} {s.state}" for s in failed), details, final=True)
        waiting = [s for s in states if not s.ready]
        if waiting:
            listed = ", ".join(f"{s.ref} {s.state}" for s in waiting)
            return Verdict(False, f"{len(waiting)} of {len(states)} workloads not ready: {listed}", details)
        listed = ", ".join(f"{s.ref} {s.state}" for s in states)
        return Verdict(
            True, f"{len(states)} workload{'s' if len(states) != 1 else ''} ready: {listed}", details
        )

    return _poll(ctx, step.timeout, check)


# --------------------------------------------------------------------------- http


def service_proxy_path(namespace: str, step: HttpStep) -> str:
    """The API server's service proxy URL path: ``/api/v1/namespaces/NS/services/[https:]NAME:PORT/proxy/PATH``."""
    return service_proxy_prefix(namespace, step) + step.path


def service_proxy_prefix(namespace: str, step: HttpStep) -> str:
    """``/api/v1/namespaces/NS/services/[https:]NAME:PORT/proxy``: what every path of the step's service starts with."""
    target = f"{step.service}:{step.port}"
    if step.scheme == "https":
        target = f"https:{target}"
    return f"/api/v1/namespaces/{namespace}/services/{target}/proxy"


def json_path_get(doc: Any, path: str) -> tuple[bool, Any]:
    """(found, value) at a dotted path (``items[0].name``) of a decoded JSON document."""
    cur = doc
    for part in parse_json_path(path):
        if isinstance(part, int):
            if not isinstance(cur, list) or part >= len(cur):
                return False, None
            cur = cur[part]
        else:
            if not isinstance(cur, dict) or part not in cur:
                return False, None
            cur = cur[part]
    return True, cur


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: ``true`` is not ``1`` (Python's ``True == 1`` is)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _api_status_message(body: str) -> str | None:
    """The message of a Kubernetes ``Status`` body: the API server answered, not the service."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if isinstance(doc, dict) and doc.get("kind") == "Status" and doc.get("apiVersion") == "v1":
        return str(doc.get("message") or doc.get("reason") or "")
    return None


def evaluate_http(
    expect: HttpExpect, status: int, body: str, regex_seconds: float = REGEX_SECONDS
) -> Verdict:
    """Compare one HTTP answer with the step's expectations; the message names the first mismatch.
    ``bodyRegex`` is given ``regex_seconds`` to match (dr.drill.bounded_regex)."""
    details: dict[str, Any] = {"status": status, "body": redacted_head(body, _BODY_EXCERPT)}
    if status != expect.status:
        api_msg = _api_status_message(body)
        why = f" (API server: {api_msg})" if api_msg else ""
        return Verdict(False, f"status {status}, expected {expect.status}{why}", details)
    if expect.body_regex is not None:
        try:
            if not search_within(expect.body_regex, body, regex_seconds):
                return Verdict(False, f"body does not match /{expect.body_regex}/", details)
        except RegexTimeout as e:
            return Verdict(False, unfinished_match(expect.body_regex, "the body", len(body), e), details)
    if expect.json_:
        try:
            doc = json.loads(body)
        except ValueError:
            return Verdict(False, "body is not JSON", details)
        for jc in expect.json_:
            found, value = json_path_get(doc, jc.path)
            if not found:
                return Verdict(False, f"{jc.path} missing in the JSON body", details)
            if not json_equal(value, jc.equals):
                return Verdict(
                    False, f"{jc.path} is {json.dumps(value)}, expected {json.dumps(jc.equals)}", details
                )
    checks = [f"status {status}"]
    if expect.body_regex is not None:
        checks.append("body matches")
    checks += [f"{jc.path} = {json.dumps(jc.equals)}" for jc in expect.json_]
    return Verdict(True, ", ".join(checks), details)


def _http(step: VerificationStep, ctx: StepContext) -> Verdict:
    assert isinstance(step, HttpStep)
    ns = ctx.target_namespace(step)
    path, prefix = service_proxy_path(ns, step), service_proxy_prefix(ns, step)
    # As quoted in the message and the report: with no query value (`?api_key=…`, `?sig=…`), as dr
    # shows any URL (dr.urls.redact_url), and masked like an exec step's command.
    where = redact(f"{step.method} {step.scheme}://{step.service}:{step.port}{redact_url(step.path)}")

    def check() -> Verdict:
        # At least a second for one try: a step cut short by the drill's timeout still asks once.
        wait = max(1.0, min(30.0, step.timeout.total_seconds()))
        at, status, body, cut, location = path, *_proxy_request(ctx.api, step, path, timeout=wait)
        left_service = False
        for _ in range(MAX_REDIRECTS):
            if not (location and _follows_redirects(step, status)):
                break
            within = _within_service(prefix, at, location)
            if within is None:
                left_service = True
                break
            at = within
            status, body, cut, location = _proxy_request(ctx.api, step, at, timeout=wait)
        v = evaluate_http(step.expect, status, body, min(REGEX_SECONDS, wait))
        v.message = f"{where}: {v.message}"
        if cut and not v.passed:
            v.message += f" (only the first {MAX_BODY >> 20} MiB of the body was read)"
        if location and _follows_redirects(step, status) and not v.passed:
            shown = redact(redact_url(location))
            v.message += (
                f" (a redirect to {shown}, not followed: it leaves the service)"
                if left_service
                else f" (a redirect to {shown}, not followed: more than {MAX_REDIRECTS} in a row)"
            )
        v.details["url"] = redact(redact_url(at))
        return v

    return _poll(ctx, step.timeout, check)


def _follows_redirects(step: HttpStep, status: int) -> bool:
    """Whether a redirect answer is followed: for a GET or HEAD that does not expect one (a path
    that redirects to a login page or adds a '/' is checked at the page it names, as before).
    A step expecting a 3xx checks the redirect itself; a POST or PUT's redirect is its answer."""
    return status in _REDIRECTS and step.method in ("GET", "HEAD") and step.expect.status not in _REDIRECTS


def _within_service(prefix: str, at: str, location: str) -> str | None:
    """The API server path ``location`` (answered at ``at``) names, if it is under the step's
    service proxy (``prefix``, ``service_proxy_prefix``); None if it names anything else (another
    host, the API server's own paths), which dr's pod must not fetch. A path with a dot segment
    even percent-encoded (``%2e%2e``), or an encoded '/' or '\\', is not followed: the API server
    may decode it into a path outside the service."""
    base = "http://api.invalid"
    parts = urllib.parse.urlsplit(urllib.parse.urljoin(base + at, location))
    if f"{parts.scheme}://{parts.netloc}" != base or not parts.path.startswith(prefix + "/"):
        return None
    # urljoin removed the dot segments written as such; what decoding still makes one, or a '/',
    # the API server would resolve: into a path outside the service.
    decoded = urllib.parse.unquote(parts.path)
    segments = decoded.split("/")
    if "\\" in decoded or len(segments) != parts.path.count("/") + 1 or {".", ".."} & set(segments):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _proxy_request(
    api: kclient.ApiClient, step: HttpStep, path: str, timeout: float
) -> tuple[int, str, bool, str | None]:
    """(status, body, whether the body was cut, the Location header) of one request through the
    service proxy.

    At most ``MAX_BODY`` bytes of the body are read, of any status: the client's ``call_api``
    reads a whole body into memory (an error's too, for its exception), and a checked path
    may serve a big download or a stream that never ends. So the request goes out through the
    client's connection pool (its TLS, proxy and retry settings) with its headers and token.
    """
    headers: dict[str, str] = {"Accept": "*/*", **step.headers, **api.default_headers}
    body: bytes | None = None
    if step.body is not None:
        ctype = step.content_type()
        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        headers["Content-Type"] = ctype
        # JSON bodies go re-encoded from the parsed value (as the client did), others as written.
        text = json.dumps(json.loads(step.body)) if "json" in ctype.lower() else step.body
        body = text.encode("utf-8")
    api.update_params_for_auth(headers, [], ["BearerToken"])
    try:
        resp = api.rest_client.pool_manager.request(
            step.method,
            api.configuration.host + path,
            body=body,
            headers=headers,
            preload_content=False,
            timeout=urllib3.Timeout(total=timeout),
            # Not followed here: a step may expect the 302 itself, and a Location may name any
            # host, which dr's pod must not fetch (``_within_service`` picks what is followed).
            redirect=False,
        )
        try:
            raw = resp.read(MAX_BODY + 1)
        finally:
            resp.close()  # not back into the pool: the rest of a cut body is still on its way
    except urllib3.exceptions.HTTPError as e:
        why = unreachable(e).replace(path, redact_url(path))
        raise StepApiError(redact(f"{step.method} {redact_url(path)}: {why}")) from e
    text = raw[:MAX_BODY].decode("utf-8", "replace")
    return resp.status, text, len(raw) > MAX_BODY, resp.headers.get("Location")


# --------------------------------------------------------------------------- exec


def _selector_of(obj: Mapping[str, Any]) -> str | None:
    sel = (obj.get("spec") or {}).get("selector") or {}
    terms = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for e in sel.get("matchExpressions") or []:
        op, key, values = e.get("operator"), e.get("key"), e.get("values") or []
        if op == "In":
            terms.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            terms.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            terms.append(str(key))
        elif op == "DoesNotExist":
            terms.append(f"!{key}")
    return ",".join(terms) or None


def _workload_selector(ctx: StepContext, ns: str, ref: str) -> tuple[str, str]:
    """(display ref, pod label selector) of ``kind/name`` or a bare name searched among workloads."""
    kind, name = workload_ref(ref)
    kinds = [kind] if kind else ["Deployment", "StatefulSet", "DaemonSet", "Job"]
    for k in kinds:
        base, plural = _WORKLOADS[k]
        try:
            obj = request(ctx.api, "GET", f"{base}/namespaces/{ns}/{plural}/{name}")
        except StepApiError as e:
            if e.status == 404:
                continue
            raise
        sel = _selector_of(obj)
        if sel is None and k == "Job":
            sel = f"batch.kubernetes.io/job-name={name}"
        if sel is None:
            raise StepApiError(f"{k.lower()}/{name} in {ns} has no pod selector")
        return f"{k.lower()}/{name}", sel
    raise StepApiError(f"workload {ref!r} not found in {ns}")


def pick_pod(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """A running pod, preferring ones whose containers are all ready; by name for repeatability."""

    def running(p: Mapping[str, Any]) -> bool:
        meta, status = p.get("metadata") or {}, p.get("status") or {}
        return status.get("phase") == "Running" and not meta.get("deletionTimestamp")

    def all_ready(p: Mapping[str, Any]) -> bool:
        cs = (p.get("status") or {}).get("containerStatuses") or []
        return bool(cs) and all(c.get("ready") for c in cs)

    candidates = sorted(
        (p for p in pods if running(p)), key=lambda p: (not all_ready(p), p["metadata"]["name"])
    )
    return candidates[0]["metadata"]["name"] if candidates else None


def _phases(pods: Sequence[Mapping[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for p in pods:
        phase = (p.get("status") or {}).get("phase") or "no status"
        counts[phase] = counts.get(phase, 0) + 1
    return ", ".join(f"{n} {ph}" for ph, n in sorted(counts.items())) or "none"


def _exec(step: VerificationStep, ctx: StepContext) -> Verdict:
    assert isinstance(step, ExecStep)
    ns = ctx.target_namespace(step)
    start = ctx.clock.monotonic()
    if step.workload is not None:
        target, selector = _workload_selector(ctx, ns, step.workload)
    else:
        target, selector = f"pods ({step.selector})", str(step.selector)
    chosen: dict[str, str] = {}

    def find_pod() -> Verdict:
        pods = list_items(ctx.api, f"/api/v1/namespaces/{ns}/pods", selector=selector)
        pod = pick_pod(pods)
        if pod is None:
            return Verdict(False, f"no running pod for {target} in {ns} (pods: {_phases(pods)})")
        chosen["pod"] = pod
        return Verdict(True, pod)

    found = _poll(ctx, step.timeout, find_pod)
    if not found.passed:
        return found
    pod = chosen["pod"]
    left = max(1.0, step.timeout.total_seconds() - (ctx.clock.monotonic() - start))
    stdin = step.stdin.encode() if step.stdin is not None else None
    result = ctx.exec.run(ns, pod, step.container, list(step.command), left, stdin)
    stdout = result.stdout.decode("utf-8", "replace")
    stderr = result.stderr.decode("utf-8", "replace")
    # What the report and the step's message quote of the output is masked: a check
    # such as `psql -c ...` or `curl -v` may print a password or a token, and drill
    # reports are read by many and kept for months.
    details = {
        "pod": pod,
        "container": step.container,
        "exitCode": result.exit_code,
        "stdout": redacted_tail(stdout, _BODY_EXCERPT),
        "stderr": redacted_tail(stderr, _BODY_EXCERPT),
    }
    # The command as the message quotes it: masked like a hook's (`mysql -pSECRET`, PGPASSWORD=).
    cmd = " ".join(redact_argv(step.command))
    if len(cmd) > 60:
        cmd = cmd[:59] + "…"
    if result.exit_code != step.expect.exit_code:
        tail = redacted_tail(stderr.strip() or stdout.strip(), _MAX_MESSAGE).splitlines()[-1:] or [""]
        why = f": {tail[0]}" if tail[0] else ""
        return Verdict(
            False,
            f"`{cmd}` in {pod} exited {result.exit_code}, expected {step.expect.exit_code}{why}",
            details,
        )
    regex = step.expect.stdout_regex
    if regex is not None:
        left = max(1.0, step.timeout.total_seconds() - (ctx.clock.monotonic() - start))
        try:
            matches = search_within(regex, stdout, min(REGEX_SECONDS, left))
        except RegexTimeout as e:
            why = unfinished_match(regex, "the output", len(stdout), e)
            return Verdict(False, f"`{cmd}` in {pod}: {why}", details)
        if not matches:
            shown = redacted_head(stdout.strip(), 80).replace("\n", " ")
            # KubernetesExec keeps the first MAX_OUTPUT bytes: the rest may be what the regex looks for.
            cut = (
                f" (only the first {MAX_OUTPUT >> 20} MiB of the output was kept)"
                if len(result.stdout) >= MAX_OUTPUT
                else ""
            )
            return Verdict(
                False, f"`{cmd}` in {pod}: output {shown!r} does not match /{regex}/{cut}", details
            )
    matched = " and output matches" if regex is not None else ""
    return Verdict(True, f"`{cmd}` in {pod} exited {result.exit_code}{matched}", details)


# --------------------------------------------------------------------------- data


def _data(step: VerificationStep, ctx: StepContext) -> Verdict:
    assert isinstance(step, DataStep)
    ns = ctx.target_namespace(step)
    paths = [c.path for c in step.checks]
    probed = ctx.data_probe(ns, step.pvc, paths, timeout=step.timeout.total_seconds(), warnings=ctx.warnings)
    problems: list[str] = []
    seen: list[str] = []
    details: dict[str, Any] = {"namespace": ns, "pvc": step.pvc, "paths": {}}
    for c in step.checks:
        p = probed.get(c.path) or PathProbe("missing")
        details["paths"][c.path] = p.to_dict()
        if p.kind == "missing":
            problems.append(f"{c.path}: missing")
        elif c.sha256 is not None:
            if p.kind != "file":
                problems.append(f"{c.path}: is a directory, expected a file")
            elif p.sha256 != c.sha256:
                problems.append(f"{c.path}: sha256 {str(p.sha256)[:12]}…, expected {c.sha256[:12]}…")
            else:
                seen.append(f"{c.path} sha256 matches")
        else:
            n = p.count or 0
            if c.count is not None and n != c.count:
                problems.append(f"{c.path}: {n} files, expected {c.count}")
            elif c.min_count is not None and n < c.min_count:
                problems.append(f"{c.path}: {n} files, expected at least {c.min_count}")
            else:
                seen.append(f"{c.path} {n} file{'s' if n != 1 else ''}")
    if problems:
        return Verdict(False, f"PVC {step.pvc}: " + "; ".join(problems), details)
    return Verdict(True, f"PVC {step.pvc}: " + ", ".join(seen), details)


# --------------------------------------------------------------------------- job


def job_manifest(step: JobStep, name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """The Job a ``job`` step runs: one container, no restarts, bounded by the step's timeout."""
    all_labels = {**labels, **MANAGED_BY, "dr.dev/drill-step": step.name}
    env: list[dict[str, Any]] = []
    for e in step.env:
        if e.secret_key_ref is not None:
            ref = e.secret_key_ref
            env.append({"name": e.name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
        else:
            env.append({"name": e.name, "value": e.value})
    container: dict[str, Any] = {
        "name": "check",
        "image": step.image,
        "env": env,
        "resources": dataclasses.asdict(step.resources),
        # The log tail becomes the termination message when the check fails
        # without writing one: the report can say why.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if step.command:
        container["command"] = list(step.command)
    if step.args:
        container["args"] = list(step.args)
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if step.service_account_name:
        pod_spec["serviceAccountName"] = step.service_account_name
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": all_labels},
        "spec": {
            "backoffLimit": step.backoff_limit,
            "activeDeadlineSeconds": max(1, math.ceil(step.timeout.total_seconds())),
            # A safety net if dr dies before its own cleanup.
            "ttlSecondsAfterFinished": 3600,
            "template": {"metadata": {"labels": all_labels}, "spec": pod_spec},
        },
    }


def _termination_messages(ctx: StepContext, ns: str, job: str) -> list[str]:
    """What the Job's pods said when they ended: termination messages, else the log tail."""
    pods: list[dict[str, Any]] = []
    for sel in (f"batch.kubernetes.io/job-name={job}", f"job-name={job}"):
        pods = list_items(ctx.api, f"/api/v1/namespaces/{ns}/pods", selector=sel)
        if pods:
            break
    out: list[str] = []
    for p in sorted(pods, key=lambda p: p["metadata"]["name"]):
        for cs in (p.get("status") or {}).get("containerStatuses") or []:
            for state in (cs.get("state") or {}, cs.get("lastState") or {}):
                term = state.get("terminated") or {}
                msg = redacted_tail((term.get("message") or "").strip(), _MAX_MESSAGE)
                if msg:
                    out.append(f"{p['metadata']['name']}: {msg}")
        if not out:
            tail = _log_tail(ctx, ns, p["metadata"]["name"])
            if tail:
                out.append(f"{p['metadata']['name']} log: {tail}")
    return out


def _log_tail(ctx: StepContext, ns: str, pod: str) -> str | None:
    try:
        resp = ctx.api.call_api(
            f"/api/v1/namespaces/{ns}/pods/{pod}/log",
            "GET",
            query_params=[("tailLines", 10)],
            header_params={"Accept": "text/plain"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=10,
        )
    except (kclient.ApiException, AttributeError):
        return None  # logs are a bonus: gone pods, or a cluster without kubelets
    text = redacted_tail(resp.data.decode("utf-8", "replace").strip(), 4 * _MAX_MESSAGE)
    return " | ".join(text.splitlines()[-5:]) or None


def _delete_job(ctx: StepContext, ns: str, name: str) -> str:
    try:
        request(
            ctx.api,
            "DELETE",
            f"/apis/batch/v1/namespaces/{ns}/jobs/{name}",
            body={"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"},
        )
    except StepApiError as e:
        if e.status == 404:
            return "deleted"
        return f"not deleted: {e.message}"
    return "deleted"


def _job(step: VerificationStep, ctx: StepContext) -> Verdict:
    assert isinstance(step, JobStep)
    ns = ctx.target_namespace(step)
    name = f"drill-{step.name}-{secrets.token_hex(3)}"[:63].rstrip("-")
    details: dict[str, Any] = {"job": name, "namespace": ns, "image": step.image}

    def check() -> Verdict:
        job = request(ctx.api, "GET", f"/apis/batch/v1/namespaces/{ns}/jobs/{name}")
        status = job.get("status") or {}
        succeeded, failed = _int(status.get("succeeded")), _int(status.get("failed"))
        details.update(succeeded=succeeded, failed=failed)
        if succeeded >= 1 or _condition(job, "Complete") is not None:
            return Verdict(True, f"job {name} succeeded", details)
        cond = _condition(job, "Failed")
        if failed >= step.backoff_limit + 1 or cond is not None:
            why = f" ({cond.get('reason')})" if cond and cond.get("reason") else ""
            said = _termination_messages(ctx, ns, name)
            if said:
                details["messages"] = said
            tail = f": {said[0]}" if said else ""
            return Verdict(
                False, f"job {name} failed{why} after {failed} attempt(s){tail}", details, final=True
            )
        return Verdict(False, f"job {name} did not finish (active: {_int(status.get('active'))})", details)

    # From before the POST: an interrupt (or a lost answer) while it runs may leave a Job
    # made; only a server that refused it (4xx) says there is none to delete.
    created = True
    try:
        try:
            request(
                ctx.api,
                "POST",
                f"/apis/batch/v1/namespaces/{ns}/jobs",
                body=job_manifest(step, name, ctx.labels),
            )
        except StepApiError as e:
            created = not (e.status is not None and 400 <= e.status < 500)
            raise
        return _poll(ctx, step.timeout, check)
    except StepApiError as e:
        # The result keeps the Job's name and (filled in below) whether it was deleted: a Job
        # left behind by a failed step is reported like one left by a finished step.
        e.step_details = details
        raise
    finally:
        if created:
            details["cleanup"] = _delete_job(ctx, ns, name)


_RUNNERS: dict[str, Callable[[VerificationStep, StepContext], Verdict]] = {
    "resources": _resources,
    "ready": _ready,
    "http": _http,
    "exec": _exec,
    "data": _data,
    "job": _job,
}
