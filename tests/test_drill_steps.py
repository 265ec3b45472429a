"""Verification steps against the Kubernetes test cluster, with a test agent playing the controllers.

The test cluster stores objects but runs nothing, so where a step waits for a
controller (``ready``, ``job``, the pod an ``exec`` step picks) the test
writes the status subresource itself — mostly from ``AgentClock.sleep``, the
moment the step waits, which makes the "after a while" deterministic; one
test uses a real thread and the system clock. ``exec`` and ``data`` go
through their seams (a small explicit ``Exec`` class, ``LocalDirectoryProbe``
over a temporary directory); ``KubernetesExec`` itself is tested against the
test cluster's real 404 and, with ``DR_TEST_KUBECONFIG``, against a real
cluster. The service proxy is not served by the test cluster either: the
``http`` step meets the cluster's real 404, and a small stand-in for the API
server's service-proxy endpoint on loopback for the answers of a service.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as kclient

from dr.drill.exec import ExecError, ExecResult, KubernetesExec, exit_code_from_status
from dr.drill.model import StepResult
from dr.drill.probe import LocalDirectoryProbe, PathProbe, probe_directory
from dr.drill.steps import (
    MAX_REDIRECTS,
    StepContext,
    SystemClock,
    evaluate_http,
    job_manifest,
    json_equal,
    json_path_get,
    pick_pod,
    run_step,
    service_proxy_path,
    service_proxy_prefix,
    workload_state,
)
from dr.runbook.model import HttpExpect, HttpStep, Runbook, VerificationStep
from tests.conftest import Kube

# --------------------------------------------------------------------------- seams and agents


class AgentClock:
    """A clock whose ``sleep`` advances time and lets the test agent act (``on_sleep(n)``)."""

    def __init__(self, on_sleep: Callable[[int], None] | None = None) -> None:
        self.t = 0.0
        self.sleeps = 0
        self.on_sleep = on_sleep

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        self.sleeps += 1
        if self.on_sleep:
            self.on_sleep(self.sleeps)

    def now(self) -> datetime:
        return datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=self.t)


@dataclass
class ScriptedExec:
    """An ``Exec`` that answers from a script and records what it was asked."""

    result: ExecResult | ExecError = field(default_factory=lambda: ExecResult(0, b"", b""))
    calls: list[dict[str, Any]] = field(default_factory=list)

    def run(
        self,
        namespace: str,
        pod: str,
        container: str | None,
        command: list[str],
        timeout: float,
        stdin: bytes | None = None,
    ) -> ExecResult:
        self.calls.append(
            {"namespace": namespace, "pod": pod, "container": container, "command": command, "stdin": stdin}
        )
        if isinstance(self.result, ExecError):
            raise self.result
        return self.result


def no_volume(namespace: str, pvc: str) -> Path | None:
    return None


def step(doc: dict[str, Any]) -> VerificationStep:
    """One verification step through the same validation as a runbook file."""
    rb = Runbook.model_validate(
        {
            "apiVersion": "dr.dev/v1",
            "kind": "Runbook",
            "metadata": {"name": "t"},
            "spec": {
                "description": "t",
                "contacts": [{"name": "o", "email": "o@example.com"}],
                "scope": {"namespaces": ["src"]},
                "objectives": {"rpo": "1h", "rto": "1h"},
                "verification": [doc],
                "procedure": [{"title": "t", "text": "t"}],
            },
        }
    )
    return rb.spec.verification[0]


def ctx_for(api: Any, namespace: str, **kw: Any) -> StepContext:
    kw.setdefault("exec", ScriptedExec())
    kw.setdefault("data_probe", LocalDirectoryProbe(no_volume))
    kw.setdefault("clock", AgentClock())
    kw.setdefault("poll_interval", 1.0)
    return StepContext(api=api, namespace=namespace, **kw)


def deployment(name: str, replicas: int = 1, labels: dict[str, str] | None = None) -> dict[str, Any]:
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": "nginx"}]},
            },
        },
    }


def statefulset(name: str, replicas: int = 1) -> dict[str, Any]:
    d = deployment(name, replicas)
    d["kind"] = "StatefulSet"
    d["spec"]["serviceName"] = name
    return d


def pod(name: str, labels: dict[str, str], phase: str | None = None, ready: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "nginx"}]},
    }


def set_pod_phase(core: kclient.CoreV1Api, ns: str, name: str, phase: str, ready: bool = True) -> None:
    status = {
        "phase": phase,
        "containerStatuses": [
            {"name": "main", "ready": ready, "image": "nginx", "imageID": "", "restartCount": 0}
        ],
    }
    core.patch_namespaced_pod_status(name, ns, {"status": status})


# --------------------------------------------------------------------------- resources


def test_resources_pass_by_kind_plural_and_group(kube: Kube, namespace: str) -> None:
    apps, core = kclient.AppsV1Api(kube.api), kclient.CoreV1Api(kube.api)
    apps.create_namespaced_deployment(namespace, deployment("web", labels={"app": "web", "tier": "front"}))
    apps.create_namespaced_stateful_set(namespace, statefulset("postgres"))
    for svc in ("web", "postgres"):
        core.create_namespaced_service(
            namespace, {"metadata": {"name": svc}, "spec": {"ports": [{"port": 80}]}}
        )
    s = step(
        {
            "name": "objects",
            "type": "resources",
            "expect": [
                {"kind": "Deployment", "names": ["web"], "selector": "tier in (front,back)"},
                {"kind": "statefulsets.apps", "names": ["postgres"]},
                {"kind": "services", "minCount": 2},
            ],
        }
    )
    r = run_step(s, ctx_for(kube.api, namespace))
    assert r.passed, r.message
    assert r.error is None and (r.name, r.type) == ("objects", "resources")
    assert r.message == (
        f"in {namespace}: 1 deployments.apps (tier in (front,back)), 1 statefulsets.apps, 2 services"
    )
    assert r.details["found"]["services"] == 2


def test_resources_fail_after_timeout_naming_what_is_missing(kube: Kube, namespace: str) -> None:
    kclient.CoreV1Api(kube.api).create_namespaced_config_map(namespace, {"metadata": {"name": "one"}})
    s = step(
        {
            "name": "objects",
            "type": "resources",
            "timeout": "10s",
            "expect": [{"kind": "ConfigMap", "minCount": 2}, {"kind": "Secret", "names": ["db-credentials"]}],
        }
    )
    clock = AgentClock()
    r = run_step(s, ctx_for(kube.api, namespace, clock=clock))
    assert not r.passed and r.error is None
    assert r.message == (
        f"timed out after 10s: in {namespace}: configmaps: 1 found, expected at least 2; "
        "secrets: db-credentials missing; secrets: 0 found, expected at least 1"
    )
    assert clock.sleeps == 10  # polled every second until the timeout
    assert r.duration == timedelta(seconds=10)


def test_resources_appearing_while_polling(kube: Kube, namespace: str) -> None:
    core = kclient.CoreV1Api(kube.api)

    def agent(n: int) -> None:
        if n == 2:
            core.create_namespaced_secret(namespace, {"metadata": {"name": "late"}})

    s = step({"name": "objects", "type": "resources", "expect": [{"kind": "Secret", "names": ["late"]}]})
    r = run_step(s, ctx_for(kube.api, namespace, clock=AgentClock(agent)))
    assert r.passed, r.message


def test_resources_unknown_kind_is_an_error_result(kube: Kube, namespace: str) -> None:
    s = step({"name": "objects", "type": "resources", "expect": [{"kind": "Frobnicator"}]})
    r = run_step(s, ctx_for(kube.api, namespace))
    assert not r.passed
    assert r.error == r.message == "the API server serves no resource 'Frobnicator'"


def test_step_namespace_is_mapped_to_its_scratch_namespace(kube: Kube, namespace: str) -> None:
    kclient.CoreV1Api(kube.api).create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}})
    s = step({"name": "objects", "type": "resources", "namespace": "src", "expect": [{"kind": "ConfigMap"}]})
    r = run_step(s, ctx_for(kube.api, "elsewhere", namespaces={"src": namespace}))
    assert r.passed and namespace in r.message
    r = run_step(s, ctx_for(kube.api, namespace))
    assert not r.passed and r.error == "no scratch namespace for source namespace 'src'"


def test_api_errors_become_results(kube: Kube, unique: str) -> None:
    # A namespace that does not exist lists as empty on a real API server; a
    # forbidden identity gets 403: the step reports it instead of raising.
    from kubernetes import config as kconfig

    if kube.cluster.external:
        pytest.skip("identities are only known for the local test cluster")
    bob = kconfig.new_client_from_config(config_file=kube.cluster.kubeconfig_for("bob"))
    try:
        s = step({"name": "objects", "type": "resources", "expect": [{"kind": "ConfigMap"}]})
        r = run_step(s, ctx_for(bob, f"t-{unique}"))
    finally:
        bob.close()
    assert not r.passed and r.error is not None
    assert 'User "bob" cannot list resource "configmaps"' in r.message and "(403)" in r.message


# --------------------------------------------------------------------------- ready


def test_workload_state_rules() -> None:
    dep = {"metadata": {"name": "web"}, "spec": {"replicas": 3}, "status": {"readyReplicas": 2}}
    assert workload_state("Deployment", dep) == workload_state("Deployment", dep)
    assert (
        workload_state("Deployment", dep).state == "2/3 ready" and not workload_state("Deployment", dep).ready
    )
    assert workload_state(
        "StatefulSet", {"metadata": {"name": "db"}, "spec": {}, "status": {"readyReplicas": 1}}
    ).ready
    assert workload_state("Deployment", {"metadata": {"name": "z"}, "spec": {"replicas": 0}}).ready
    ds = {"metadata": {"name": "agent"}, "status": {"desiredNumberScheduled": 3, "numberReady": 3}}
    assert workload_state("DaemonSet", ds).ready
    assert workload_state("DaemonSet", {"metadata": {"name": "agent"}}).state == "not scheduled yet"
    job = {"metadata": {"name": "m"}, "spec": {"completions": 2}, "status": {"succeeded": 1}}
    assert workload_state("Job", job).state == "1/2 completed"
    done = {"metadata": {"name": "m"}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert workload_state("Job", done).ready
    failed = {
        "metadata": {"name": "m"},
        "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]},
    }
    st = workload_state("Job", failed)
    assert st.failed and st.state == "failed: BackoffLimitExceeded"


def test_ready_waits_for_the_controller(kube: Kube, namespace: str) -> None:
    apps, batch = kclient.AppsV1Api(kube.api), kclient.BatchV1Api(kube.api)
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=2))
    apps.create_namespaced_stateful_set(namespace, statefulset("db"))
    batch.create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "migrate"},
            "spec": {
                "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "x"}]}}
            },
        },
    )

    def controllers(n: int) -> None:
        # The test agent plays the controllers: one workload becomes ready per poll.
        if n == 1:
            apps.patch_namespaced_deployment_status("web", namespace, {"status": {"readyReplicas": 1}})
        if n == 2:
            apps.patch_namespaced_stateful_set_status("db", namespace, {"status": {"readyReplicas": 1}})
        if n == 3:
            batch.patch_namespaced_job_status("migrate", namespace, {"status": {"succeeded": 1}})
        if n == 4:
            apps.patch_namespaced_deployment_status("web", namespace, {"status": {"readyReplicas": 2}})

    clock = AgentClock(controllers)
    r = run_step(step({"name": "ready", "type": "ready"}), ctx_for(kube.api, namespace, clock=clock))
    assert r.passed, r.message
    assert clock.sleeps == 4
    assert (
        r.message
        == "3 workloads ready: deployment/web 2/2 ready, statefulset/db 1/1 ready, job/migrate complete"
    )
    assert r.details["workloads"]["deployment/web"] == "2/2 ready"


def test_ready_with_a_controller_thread_and_the_system_clock(kube: Kube, namespace: str) -> None:
    apps = kclient.AppsV1Api(kube.api)
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=1))
    started = threading.Event()

    def controller() -> None:
        started.wait(5)
        time.sleep(0.3)
        apps.patch_namespaced_deployment_status("web", namespace, {"status": {"readyReplicas": 1}})

    t = threading.Thread(target=controller)
    t.start()
    try:
        started.set()
        ctx = ctx_for(kube.api, namespace, clock=SystemClock(), poll_interval=0.1)
        r = run_step(step({"name": "ready", "type": "ready", "timeout": "30s"}), ctx)
    finally:
        t.join()
    assert r.passed, r.message
    assert r.message == "1 workload ready: deployment/web 1/1 ready"


def test_ready_times_out_naming_the_laggards(kube: Kube, namespace: str) -> None:
    apps = kclient.AppsV1Api(kube.api)
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=2))
    apps.create_namespaced_deployment(namespace, deployment("api", replicas=1))
    apps.patch_namespaced_deployment_status("api", namespace, {"status": {"readyReplicas": 1}})
    s = step({"name": "ready", "type": "ready", "timeout": "5m", "kinds": ["Deployment"]})
    clock = AgentClock()
    r = run_step(s, ctx_for(kube.api, namespace, clock=clock, poll_interval=30))
    assert not r.passed and r.error is None
    assert r.message == "timed out after 5m: 1 of 2 workloads not ready: deployment/web 0/2 ready"
    assert clock.sleeps == 10


def test_ready_fails_at_once_for_a_failed_job_missing_names_or_nothing(kube: Kube, namespace: str) -> None:
    batch = kclient.BatchV1Api(kube.api)
    batch.create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "migrate"},
            "spec": {
                "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "x"}]}}
            },
        },
    )
    cond = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
    batch.patch_namespaced_job_status("migrate", namespace, {"status": {"failed": 1, "conditions": [cond]}})
    clock = AgentClock()
    r = run_step(step({"name": "ready", "type": "ready"}), ctx_for(kube.api, namespace, clock=clock))
    assert (r.passed, r.message, clock.sleeps) == (False, "job/migrate failed: BackoffLimitExceeded", 0)

    s = step({"name": "ready", "type": "ready", "kinds": ["StatefulSet"], "names": ["db"]})
    r = run_step(s, ctx_for(kube.api, namespace, clock=clock))
    assert r.message == f"in {namespace}: statefulset db not found" and clock.sleeps == 0

    s = step({"name": "ready", "type": "ready", "kinds": ["DaemonSet"], "selector": "app=agent"})
    r = run_step(s, ctx_for(kube.api, namespace, clock=clock))
    assert r.message == f"no DaemonSet matching app=agent found in {namespace}" and clock.sleeps == 0


# --------------------------------------------------------------------------- http


def test_evaluate_http_rules() -> None:
    ok = HttpExpect.model_validate(
        {"status": 200, "bodyRegex": r'"status":\s*"ok"', "json": [{"path": "checks[0].db", "equals": True}]}
    )
    body = json.dumps({"status": "ok", "checks": [{"db": True}]})
    v = evaluate_http(ok, 200, body)
    assert v.passed and v.message == "status 200, body matches, checks[0].db = true"
    assert evaluate_http(ok, 503, "busy").message == "status 503, expected 200"
    assert evaluate_http(ok, 200, "{}").message == 'body does not match /"status":\\s*"ok"/'
    assert evaluate_http(ok, 200, '{"status": "ok", "checks": [{"db": 1}]}').message == (
        "checks[0].db is 1, expected true"
    )
    assert evaluate_http(ok, 200, '{"status": "ok", "checks": []}').message == (
        "checks[0].db missing in the JSON body"
    )
    assert evaluate_http(ok, 200, '"status": "ok" but not json').message == "body is not JSON"
    status = json.dumps({"kind": "Status", "apiVersion": "v1", "message": 'services "web" not found'})
    assert (
        evaluate_http(ok, 404, status).message
        == 'status 404, expected 200 (API server: services "web" not found)'
    )


def test_json_helpers() -> None:
    doc = {"items": [{"name": "a", "tags": [1, 2]}], "ok": True}
    assert json_path_get(doc, "items[0].tags[1]") == (True, 2)
    assert json_path_get(doc, "items[1].name") == (False, None)
    assert json_path_get(doc, "ok.deeper") == (False, None)
    assert json_equal(1, 1.0) and not json_equal(True, 1) and not json_equal([True], [1])
    assert json_equal({"a": [1, "x"]}, {"a": [1, "x"]}) and not json_equal({"a": 1}, {"b": 1})


def test_http_against_the_test_cluster_reports_the_api_servers_404(kube: Kube, namespace: str) -> None:
    core = kclient.CoreV1Api(kube.api)
    core.create_namespaced_service(
        namespace, {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 8080}]}}
    )
    s = step(
        {
            "name": "health",
            "type": "http",
            "service": "web",
            "port": 8080,
            "path": "/healthz",
            "timeout": "3s",
        }
    )
    r = run_step(s, ctx_for(kube.api, namespace))
    assert not r.passed
    assert r.message == (
        "timed out after 3s: GET http://web:8080/healthz: status 404, expected 200 "
        "(API server: the server could not find the requested resource)"
    )
    assert r.details["url"] == f"/api/v1/namespaces/{namespace}/services/web:8080/proxy/healthz"


@dataclass
class ProxyStandIn:
    """The API server's service-proxy endpoint, standing in where the test cluster has none."""

    url: str
    token: str
    requests: list[tuple[str, str, str | None]]
    hits: dict[str, int]


@pytest.fixture
def proxy() -> Iterator[ProxyStandIn]:
    token = "stand-in-token"
    seen: list[tuple[str, str, str | None]] = []
    hits: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def answer(self, status: int, body: Any) -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else None
            seen.append((self.command, self.path, body))
            if self.headers.get("Authorization") != f"Bearer {token}":
                return self.answer(401, {"kind": "Status", "apiVersion": "v1", "message": "Unauthorized"})
            prefix, _, rest = self.path.partition("/proxy")
            service = prefix.rsplit("/", 1)[-1]
            if service not in ("web:8080", "https:web:8443"):
                msg = f'services "{service.split(":")[-2]}" not found'
                return self.answer(404, {"kind": "Status", "apiVersion": "v1", "message": msg, "code": 404})
            hits[rest] = hits.get(rest, 0) + 1
            if rest.partition("?")[0] == "/healthz":
                return self.answer(200, {"status": "ok", "checks": {"database": "ok"}})
            if rest == "/warming-up":
                if hits[rest] < 3:
                    return self.answer(503, "warming up")
                return self.answer(200, {"status": "ok"})
            if rest == "/echo":
                return self.answer(201, {"got": json.loads(body or "null")})
            if rest == "/loop":  # a redirect to itself, for ever
                self.send_response(302)
                self.send_header("Location", "loop")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            if rest.startswith("/moved"):
                # A redirect, to this page or to any host the app names.
                self.send_response(302)
                self.send_header("Location", rest.partition("to=")[2] or prefix + "/proxy/healthz")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            if rest.startswith("/huge"):
                # A page of 96 MiB (a download behind the checked path, a stream that never ends),
                # with a status from the path: what of it was sent before the client stopped reading.
                status = int(rest.rpartition("/")[2])
                self.send_response(status)
                self.send_header("Content-Length", str(96 << 20))
                self.end_headers()
                hits["huge bytes"] = 0
                for _ in range(96):
                    try:
                        self.wfile.write(b"x" * (1 << 20))
                    except OSError:
                        return None
                    hits["huge bytes"] += 1 << 20
                return None
            return self.answer(404, "no such page")

        do_GET = do_POST = do_PUT = do_HEAD = handle_any

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield ProxyStandIn(f"http://127.0.0.1:{server.server_address[1]}", token, seen, hits)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def proxy_api(p: ProxyStandIn) -> kclient.ApiClient:
    cfg = kclient.Configuration(
        host=p.url, api_key={"BearerToken": p.token}, api_key_prefix={"BearerToken": "Bearer"}
    )
    return kclient.ApiClient(cfg)


def test_http_through_the_service_proxy(proxy: ProxyStandIn) -> None:
    s = step(
        {
            "name": "health",
            "type": "http",
            "service": "web",
            "port": 8080,
            "path": "/healthz",
            "expect": {"bodyRegex": '"status": "ok"', "json": [{"path": "checks.database", "equals": "ok"}]},
        }
    )
    with proxy_api(proxy) as api:
        r = run_step(s, ctx_for(api, "drill-shop-1"))
    assert r.passed, r.message
    assert r.message == 'GET http://web:8080/healthz: status 200, body matches, checks.database = "ok"'
    assert proxy.requests == [
        ("GET", "/api/v1/namespaces/drill-shop-1/services/web:8080/proxy/healthz", None)
    ]


def test_http_polls_until_the_service_answers(proxy: ProxyStandIn) -> None:
    s = step({"name": "warm", "type": "http", "service": "web", "port": 8080, "path": "/warming-up"})
    clock = AgentClock()
    with proxy_api(proxy) as api:
        r = run_step(s, ctx_for(api, "ns", clock=clock))
    assert r.passed and clock.sleeps == 2 and proxy.hits["/warming-up"] == 3


def test_http_failures_say_why(proxy: ProxyStandIn) -> None:
    with proxy_api(proxy) as api:
        missing = step({"name": "h", "type": "http", "service": "api", "port": 8080, "timeout": "2s"})
        r = run_step(missing, ctx_for(api, "ns"))
        assert r.message == (
            "timed out after 2s: GET http://api:8080/: status 404, expected 200 "
            '(API server: services "api" not found)'
        )
        page = step(
            {"name": "h", "type": "http", "service": "web", "port": 8080, "path": "/nope", "timeout": "1s"}
        )
        r = run_step(page, ctx_for(api, "ns"))
        assert r.message == "timed out after 1s: GET http://web:8080/nope: status 404, expected 200"
        assert r.details["body"] == "no such page"
    bad = kclient.ApiClient(kclient.Configuration(host=proxy.url, api_key={"BearerToken": "wrong"}))
    with bad:
        r = run_step(
            step({"name": "h", "type": "http", "service": "web", "port": 8080, "timeout": "1s"}),
            ctx_for(bad, "ns"),
        )
    assert not r.passed and "status 401, expected 200 (API server: Unauthorized)" in r.message


def test_http_post_https_and_expected_status(proxy: ProxyStandIn) -> None:
    s = step(
        {
            "name": "echo",
            "type": "http",
            "service": "web",
            "port": 8443,
            "scheme": "https",
            "method": "POST",
            "path": "/echo",
            "body": '{"ping": 1}',
            "expect": {"status": 201, "json": [{"path": "got.ping", "equals": 1}]},
        }
    )
    with proxy_api(proxy) as api:
        r = run_step(s, ctx_for(api, "ns"))
    assert r.passed, r.message
    assert proxy.requests[-1] == (
        "POST",
        "/api/v1/namespaces/ns/services/https:web:8443/proxy/echo",
        '{"ping": 1}',
    )


def test_http_unreachable_api_server_is_an_error(unique: str) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = kclient.ApiClient(kclient.Configuration(host=f"http://127.0.0.1:{port}"))
    api.configuration.retries = 0
    with api:
        r = run_step(
            step({"name": "h", "type": "http", "service": "web", "port": 80, "timeout": "1s"}),
            ctx_for(api, "ns"),
        )
    assert not r.passed and r.error is not None
    assert r.error.startswith("GET /api/v1/namespaces/ns/services/web:80/proxy/: ")


def test_service_proxy_path_uses_port_names() -> None:
    s = step({"name": "h", "type": "http", "service": "nginx", "port": "http", "path": "/a?b=1"})
    assert service_proxy_path("site", s) == "/api/v1/namespaces/site/services/nginx:http/proxy/a?b=1"  # type: ignore[arg-type]


# --------------------------------------------------------------------------- exec


def test_exec_picks_a_running_ready_pod_of_the_workload(kube: Kube, namespace: str) -> None:
    apps, core = kclient.AppsV1Api(kube.api), kclient.CoreV1Api(kube.api)
    apps.create_namespaced_stateful_set(namespace, statefulset("postgres"))
    for name, phase, ready in (
        ("postgres-0", "Running", False),
        ("postgres-1", "Running", True),
        ("postgres-2", "Pending", False),
    ):
        core.create_namespaced_pod(namespace, pod(name, {"app": "postgres"}))
        set_pod_phase(core, namespace, name, phase, ready)
    core.create_namespaced_pod(namespace, pod("other", {"app": "web"}))
    set_pod_phase(core, namespace, "other", "Running")
    fake = ScriptedExec(ExecResult(0, b"t\n", b""))
    s = step(
        {
            "name": "orders",
            "type": "exec",
            "workload": "statefulset/postgres",
            "container": "postgres",
            "command": ["psql", "-tAc", "select count(*) > 0 from orders"],
            "stdin": "\\q\n",
            "expect": {"stdoutRegex": r"^t\s*$"},
        }
    )
    r = run_step(s, ctx_for(kube.api, namespace, exec=fake))
    assert r.passed, r.message
    assert (
        r.message == "`psql -tAc select count(*) > 0 from orders` in postgres-1 exited 0 and output matches"
    )
    assert fake.calls == [
        {
            "namespace": namespace,
            "pod": "postgres-1",
            "container": "postgres",
            "command": ["psql", "-tAc", "select count(*) > 0 from orders"],
            "stdin": b"\\q\n",
        }
    ]
    assert r.details["stdout"] == "t\n"


def test_exec_by_bare_name_and_by_selector(kube: Kube, namespace: str) -> None:
    apps, core = kclient.AppsV1Api(kube.api), kclient.CoreV1Api(kube.api)
    apps.create_namespaced_deployment(
        namespace, deployment("redis", labels={"app.kubernetes.io/name": "redis"})
    )
    core.create_namespaced_pod(namespace, pod("redis-abc", {"app.kubernetes.io/name": "redis"}))
    set_pod_phase(core, namespace, "redis-abc", "Running")
    fake = ScriptedExec(ExecResult(0, b"PONG\n", b""))
    for target in ({"workload": "redis"}, {"selector": "app.kubernetes.io/name=redis"}):
        s = step(
            {
                "name": "ping",
                "type": "exec",
                "command": ["redis-cli", "ping"],
                "expect": {"stdoutRegex": "PONG"},
                **target,
            }
        )
        r = run_step(s, ctx_for(kube.api, namespace, exec=fake))
        assert r.passed, r.message
    assert [c["pod"] for c in fake.calls] == ["redis-abc", "redis-abc"]


def test_exec_verdicts(kube: Kube, namespace: str) -> None:
    core = kclient.CoreV1Api(kube.api)
    core.create_namespaced_pod(namespace, pod("db-0", {"app": "db"}))
    set_pod_phase(core, namespace, "db-0", "Running")
    base = {"name": "q", "type": "exec", "selector": "app=db", "command": ["check"]}

    fake = ScriptedExec(ExecResult(2, b"partial\n", b"ERROR: relation orders does not exist\n"))
    r = run_step(step(base), ctx_for(kube.api, namespace, exec=fake))
    assert (r.passed, r.error) == (False, None)
    assert r.message == "`check` in db-0 exited 2, expected 0: ERROR: relation orders does not exist"
    assert r.details["exitCode"] == 2

    fake = ScriptedExec(ExecResult(0, b"f\n", b""))
    r = run_step(step({**base, "expect": {"stdoutRegex": "^t$"}}), ctx_for(kube.api, namespace, exec=fake))
    assert r.message == "`check` in db-0: output 'f' does not match /^t$/"

    fake = ScriptedExec(ExecResult(1, b"", b""))
    r = run_step(step({**base, "expect": {"exitCode": 1}}), ctx_for(kube.api, namespace, exec=fake))
    assert r.passed and r.message == "`check` in db-0 exited 1"

    fake = ScriptedExec(ExecError("cannot exec into pod x/db-0: forbidden"))
    r = run_step(step(base), ctx_for(kube.api, namespace, exec=fake))
    assert not r.passed and r.error == "cannot exec into pod x/db-0: forbidden"


def test_exec_and_http_output_is_masked_in_messages_and_reports(kube: Kube, namespace: str) -> None:
    # What a step quotes of a check's output went into the drill report as printed: a
    # `psql` or `curl -v` check printing a password or a token put it in a report kept
    # for months. Masked now, and before the cut, so a name just outside it still counts.
    core = kclient.CoreV1Api(kube.api)
    core.create_namespaced_pod(namespace, pod("db-0", {"app": "db"}))
    set_pod_phase(core, namespace, "db-0", "Running")
    base = {"name": "q", "type": "exec", "selector": "app=db", "command": ["check"]}
    # The excerpt is the last 300 characters: cut first, they would hold only the value.
    stderr = b"PGPASSWORD=" + b"h" * 320 + b"\nfailed: Authorization: Bearer abc.def.ghi\n"
    fake = ScriptedExec(ExecResult(2, b"token: s3cr3t-value\n", stderr))
    r = run_step(step(base), ctx_for(kube.api, namespace, exec=fake))
    assert not r.passed and r.message.endswith("expected 0: failed: Authorization: Bearer [REDACTED]")
    assert r.details["stderr"] == "PGPASSWORD=[REDACTED]\nfailed: Authorization: Bearer [REDACTED]\n"
    assert r.details["stdout"] == "token: [REDACTED]\n"
    fake = ScriptedExec(ExecResult(0, b"password=hunter2\n", b""))
    r = run_step(step({**base, "expect": {"stdoutRegex": "^t$"}}), ctx_for(kube.api, namespace, exec=fake))
    assert r.message == "`check` in db-0: output 'password=[REDACTED]' does not match /^t$/"
    for text in (r.message, str(r.details)):
        assert "hunter2" not in text and "hhh" not in text and "s3cr3t" not in text and "abc.def" not in text
    # The step's own command, quoted in its message: `mysql -pSECRET` or `PGPASSWORD=… psql`
    # in a runbook went into the report as written.
    for command, shown in ((["mysql", "-uroot", "-phunter2", "-e", "select 1"], "mysql -uroot -p[REDACTED] -e select 1"),
                           (["sh", "-c", "PGPASSWORD=hunter2 psql -c 'select 1'"],
                            "sh -c PGPASSWORD=[REDACTED] psql -c 'select 1'")):  # fmt: skip
        fake = ScriptedExec(ExecResult(0, b"1\n", b""))
        r = run_step(step({**base, "command": command}), ctx_for(kube.api, namespace, exec=fake))
        assert r.passed and r.message == f"`{shown}` in db-0 exited 0", r.message
        assert fake.calls[0]["command"] == command  # what ran: as written
    v = evaluate_http(HttpExpect(status=200), 500, '{"error": "bad", "secret": "tok-123"}')
    assert "tok-123" not in str(v.details) and '"secret": "[REDACTED]' in v.details["body"]


def test_exec_without_a_running_pod(kube: Kube, namespace: str) -> None:
    core = kclient.CoreV1Api(kube.api)
    core.create_namespaced_pod(namespace, pod("db-0", {"app": "db"}))
    set_pod_phase(core, namespace, "db-0", "Pending")
    core.create_namespaced_pod(namespace, pod("db-1", {"app": "db"}))
    fake = ScriptedExec()
    s = step({"name": "q", "type": "exec", "selector": "app=db", "command": ["check"], "timeout": "4s"})
    r = run_step(s, ctx_for(kube.api, namespace, exec=fake))
    assert (
        r.message
        == f"timed out after 4s: no running pod for pods (app=db) in {namespace} (pods: 1 Pending, 1 no status)"
    )
    assert fake.calls == []
    s = step({"name": "q", "type": "exec", "workload": "deployment/db", "command": ["check"]})
    r = run_step(s, ctx_for(kube.api, namespace, exec=fake))
    assert not r.passed and r.error == f"workload 'deployment/db' not found in {namespace}"


def test_pick_pod_is_repeatable() -> None:
    def p(name: str, phase: str, ready: bool, deleting: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name}
        if deleting:
            meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        return {"metadata": meta, "status": {"phase": phase, "containerStatuses": [{"ready": ready}]}}

    assert pick_pod([p("b", "Running", True), p("a", "Running", True)]) == "a"
    assert pick_pod([p("a", "Running", False), p("b", "Running", True)]) == "b"
    assert pick_pod([p("a", "Running", True, deleting=True), p("b", "Pending", True)]) is None


def test_exit_code_from_status() -> None:
    assert exit_code_from_status('{"metadata":{},"status":"Success"}') == 0
    failure = {
        "status": "Failure",
        "reason": "NonZeroExitCode",
        "message": "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }
    assert exit_code_from_status(json.dumps(failure).encode()) == 3
    with pytest.raises(ExecError, match='command did not run: exec: "nope": executable file not found'):
        exit_code_from_status(
            {"status": "Failure", "message": 'exec: "nope": executable file not found in $PATH'}
        )
    with pytest.raises(ExecError, match="exec ended without a status"):
        exit_code_from_status(b"")


def test_kubernetes_exec_against_the_test_cluster_says_exec_is_not_served(kube: Kube, namespace: str) -> None:
    core = kclient.CoreV1Api(kube.api)
    core.create_namespaced_pod(namespace, pod("db-0", {"app": "db"}))
    with pytest.raises(ExecError) as e:
        KubernetesExec(kube.api).run(namespace, "db-0", "main", ["true"], timeout=10)
    assert e.value.message == (
        f"cannot exec into pod {namespace}/db-0 container main: "
        "the API server does not serve pods/exec for it (404: pod or exec endpoint not found)"
    )
    # And through the step: an error result, not an exception.
    set_pod_phase(core, namespace, "db-0", "Running")
    s = step({"name": "q", "type": "exec", "selector": "app=db", "container": "main", "command": ["true"]})
    r = run_step(s, ctx_for(kube.api, namespace, exec=KubernetesExec(kube.api)))
    assert not r.passed and r.error is not None and "does not serve pods/exec" in r.error


REAL_CLUSTER = os.environ.get("DR_TEST_KUBECONFIG")


@pytest.mark.skipif(
    not REAL_CLUSTER,
    reason="KubernetesExec's happy path needs a cluster with kubelets: set DR_TEST_KUBECONFIG",
)
def test_kubernetes_exec_on_a_real_cluster(unique: str) -> None:
    from kubernetes import config as kconfig

    api = kconfig.new_client_from_config(config_file=REAL_CLUSTER)
    core = kclient.CoreV1Api(api)
    ns = f"dr-exec-{unique}"
    core.create_namespace({"metadata": {"name": ns}})
    try:
        spec = {"containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "600"]}]}
        core.create_namespaced_pod(ns, {"metadata": {"name": "box"}, "spec": spec})
        deadline = time.monotonic() + 180
        while core.read_namespaced_pod_status("box", ns).status.phase != "Running":
            assert time.monotonic() < deadline, "pod did not start"
            time.sleep(1)
        ex = KubernetesExec(api)
        res = ex.run(ns, "box", "main", ["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=30)
        assert res == ExecResult(3, b"out\n", b"err\n")
        res = ex.run(ns, "box", "main", ["head", "-c", "5"], timeout=30, stdin=b"hello world")
        assert res.exit_code == 0 and res.stdout == b"hello"
        with pytest.raises(ExecError, match="command did not run"):
            ex.run(ns, "box", "main", ["/no/such/binary"], timeout=30)
        with pytest.raises(ExecError, match="did not finish within 2s"):
            ex.run(ns, "box", "main", ["sleep", "30"], timeout=2)
    finally:
        core.delete_namespace(ns)
        api.close()


# --------------------------------------------------------------------------- data


def make_volume(root: Path) -> dict[str, str]:
    (root / "canary").mkdir(parents=True)
    (root / "canary" / "canary.txt").write_bytes(b"canary\n")
    (root / "products").mkdir()
    for i in range(5):
        (root / "products" / f"p{i}.jpg").write_bytes(bytes([i]) * 100)
    (root / "products" / "sub").mkdir()
    (root / "products" / "sub" / "deep.jpg").write_bytes(b"x")
    return {"canary": hashlib.sha256(b"canary\n").hexdigest()}


def test_probe_directory(tmp_path: Path) -> None:
    sums = make_volume(tmp_path)
    (tmp_path / "escape").symlink_to("/etc")
    got = probe_directory(tmp_path, ["canary/canary.txt", "products", ".", "nope", "escape"])
    assert got == {
        "canary/canary.txt": PathProbe("file", sha256=sums["canary"], count=1),
        "products": PathProbe("dir", count=6),
        ".": PathProbe("dir", count=7),
        "nope": PathProbe("missing"),
        "escape": PathProbe("missing"),
    }
    assert PathProbe.from_dict(got["products"].to_dict()) == got["products"]


def test_data_step_over_a_local_volume(tmp_path: Path) -> None:
    sums = make_volume(tmp_path / "uploads")
    volumes = {("drill-shop-1", "uploads"): tmp_path / "uploads"}
    probe = LocalDirectoryProbe(lambda ns, pvc: volumes.get((ns, pvc)))
    good = step(
        {
            "name": "uploads",
            "type": "data",
            "pvc": "uploads",
            "checks": [
                {"path": "/canary/canary.txt", "sha256": sums["canary"]},
                {"path": "products", "minCount": 6},
                {"path": "products/sub", "count": 1},
            ],
        }
    )
    api = kclient.ApiClient()
    r = run_step(good, ctx_for(api, "drill-shop-1", data_probe=probe))
    assert r.passed, r.message
    assert r.message == "PVC uploads: canary/canary.txt sha256 matches, products 6 files, products/sub 1 file"
    assert r.details["paths"]["products"] == {"kind": "dir", "count": 6}

    bad = step(
        {
            "name": "uploads",
            "type": "data",
            "pvc": "uploads",
            "checks": [
                {"path": "canary/canary.txt", "sha256": "0" * 64},
                {"path": "products", "minCount": 100},
                {"path": "products", "sha256": "1" * 64},
                {"path": "products/sub", "count": 2},
                {"path": "gone.txt", "count": 1},
            ],
        }
    )
    r = run_step(bad, ctx_for(api, "drill-shop-1", data_probe=probe))
    assert not r.passed and r.error is None
    assert r.message == (
        f"PVC uploads: canary/canary.txt: sha256 {sums['canary'][:12]}…, expected 000000000000…; "
        "products: 6 files, expected at least 100; products: is a directory, expected a file; "
        "products/sub: 1 files, expected 2; gone.txt: missing"
    )
    r = run_step(good, ctx_for(api, "other-ns", data_probe=probe))
    assert not r.passed and r.error == "volume of PVC other-ns/uploads is not available to the probe"


# --------------------------------------------------------------------------- job


def job_step(**extra: Any) -> VerificationStep:
    return step(
        {
            "name": "smoke",
            "type": "job",
            "image": "ghcr.io/acme/smoke:1",
            "command": ["/smoke"],
            "args": ["--fast"],
            "env": [
                {"name": "A", "value": "1"},
                {"name": "PW", "secretKeyRef": {"name": "smoke", "key": "pw"}},
            ],
            **extra,
        }
    )


def test_job_manifest() -> None:
    s = job_step(timeout="90s", backoffLimit=2, serviceAccountName="smoke")
    m = job_manifest(s, "drill-smoke-abc", {"dr.dev/drill": "d1"})  # type: ignore[arg-type]
    assert m["metadata"]["labels"] == {
        "dr.dev/drill": "d1",
        "app.kubernetes.io/managed-by": "dr",
        "dr.dev/drill-step": "smoke",
    }
    spec = m["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (2, 90)
    pod_spec = spec["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Never" and pod_spec["serviceAccountName"] == "smoke"
    c = pod_spec["containers"][0]
    assert (c["image"], c["command"], c["args"]) == ("ghcr.io/acme/smoke:1", ["/smoke"], ["--fast"])
    assert c["env"] == [
        {"name": "A", "value": "1"},
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "smoke", "key": "pw"}}},
    ]
    assert c["resources"]["requests"] == {"cpu": "250m", "memory": "256Mi"}


def jobs_in(kube: Kube, ns: str) -> list[Any]:
    return kclient.BatchV1Api(kube.api).list_namespaced_job(ns).items


def test_job_succeeds_and_is_cleaned_up(kube: Kube, namespace: str) -> None:
    batch = kclient.BatchV1Api(kube.api)
    created: list[Any] = []

    def agent(n: int) -> None:
        jobs = jobs_in(kube, namespace)
        created.extend(jobs)
        if n == 2:
            batch.patch_namespaced_job_status(jobs[0].metadata.name, namespace, {"status": {"succeeded": 1}})

    r = run_step(
        job_step(), ctx_for(kube.api, namespace, clock=AgentClock(agent), labels={"dr.dev/drill": "d1"})
    )
    assert r.passed, r.message
    name = created[0].metadata.name
    assert name.startswith("drill-smoke-") and created[0].metadata.labels["dr.dev/drill"] == "d1"
    assert r.message == f"job {name} succeeded"
    assert r.details["cleanup"] == "deleted"
    assert jobs_in(kube, namespace) == []


def test_job_failure_reports_the_termination_message(kube: Kube, namespace: str) -> None:
    batch, core = kclient.BatchV1Api(kube.api), kclient.CoreV1Api(kube.api)

    def agent(n: int) -> None:
        # The test agent plays the Job controller and the kubelet: a pod ran and failed.
        if n == 1:
            job = jobs_in(kube, namespace)[0].metadata.name
            core.create_namespaced_pod(namespace, pod(f"{job}-x1", {"batch.kubernetes.io/job-name": job}))
            term = {"exitCode": 1, "message": "checkout failed: HTTP 500 from /cart"}
            status = {
                "phase": "Failed",
                "containerStatuses": [
                    {
                        "name": "check",
                        "ready": False,
                        "image": "x",
                        "imageID": "",
                        "restartCount": 0,
                        "state": {"terminated": term},
                    }
                ],
            }
            core.patch_namespaced_pod_status(f"{job}-x1", namespace, {"status": status})
            batch.patch_namespaced_job_status(job, namespace, {"status": {"failed": 1}})

    clock = AgentClock(agent)
    r = run_step(job_step(), ctx_for(kube.api, namespace, clock=clock))
    assert not r.passed and r.error is None
    job = r.details["job"]
    assert r.message == f"job {job} failed after 1 attempt(s): {job}-x1: checkout failed: HTTP 500 from /cart"
    assert clock.sleeps == 1
    assert r.details["cleanup"] == "deleted" and jobs_in(kube, namespace) == []


def test_job_deadline_condition_and_timeout(kube: Kube, namespace: str) -> None:
    batch = kclient.BatchV1Api(kube.api)

    def deadline(n: int) -> None:
        job = jobs_in(kube, namespace)[0].metadata.name
        cond = {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}
        batch.patch_namespaced_job_status(job, namespace, {"status": {"conditions": [cond]}})

    r = run_step(job_step(backoffLimit=3), ctx_for(kube.api, namespace, clock=AgentClock(deadline)))
    assert r.message == f"job {r.details['job']} failed (DeadlineExceeded) after 0 attempt(s)"

    clock = AgentClock()
    r = run_step(job_step(timeout="20s"), ctx_for(kube.api, namespace, clock=clock, poll_interval=5))
    assert r.message == f"timed out after 20s: job {r.details['job']} did not finish (active: 0)"
    assert clock.sleeps == 4 and jobs_in(kube, namespace) == []


def test_job_in_a_missing_namespace_is_an_error(kube: Kube, unique: str) -> None:
    r = run_step(job_step(), ctx_for(kube.api, f"gone-{unique}"))
    assert not r.passed and r.error is not None
    assert r.error.startswith(
        f'POST /apis/batch/v1/namespaces/gone-{unique}/jobs: namespaces "gone-{unique}" not found'
    )


# --------------------------------------------------------------------------- all steps


def test_a_failed_step_is_a_result_and_the_next_step_runs(kube: Kube, namespace: str) -> None:
    # As a drill (dr.drill.run) and dr runbook verify (dr.drill.verify) run them: one run_step each,
    # in order, each result kept as it comes (a stopped drill reports the steps it ran).
    kclient.CoreV1Api(kube.api).create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}})
    steps = [
        step({"name": "a", "type": "resources", "timeout": "1s", "expect": [{"kind": "Secret"}]}),
        step({"name": "b", "type": "resources", "expect": [{"kind": "ConfigMap"}]}),
    ]
    ctx = ctx_for(kube.api, namespace)
    results = [run_step(s, ctx) for s in steps]
    assert [(r.name, r.passed) for r in results] == [("a", False), ("b", True)]
    again = type(results[0]).model_validate_json(results[0].model_dump_json(by_alias=True))
    assert again == results[0]


# --------------------------------------------------------------------------- more error paths


def test_poll_waits_out_transient_api_errors_only() -> None:
    from dr.drill.api import StepApiError
    from dr.drill.steps import Verdict, _poll

    answers: list[int] = [503, 429, 0]

    def flaky() -> Verdict:
        if answers:
            status = answers.pop(0)
            raise StepApiError(f"GET /x: HTTP {status}") from kclient.ApiException(status=status)
        return Verdict(True, "fine")

    ctx = ctx_for(kclient.ApiClient(), "ns")
    assert _poll(ctx, timedelta(minutes=1), flaky).passed

    def forbidden() -> Verdict:
        raise StepApiError("GET /x: forbidden (403)") from kclient.ApiException(status=403)

    with pytest.raises(StepApiError, match="forbidden"):
        _poll(ctx, timedelta(minutes=1), forbidden)

    def always_busy() -> Verdict:
        raise StepApiError("GET /x: HTTP 503") from kclient.ApiException(status=503)

    v = _poll(ctx_for(kclient.ApiClient(), "ns"), timedelta(seconds=3), always_busy)
    assert (v.passed, v.message) == (False, "timed out after 3s: GET /x: HTTP 503")


def test_kubernetes_exec_forbidden(kube: Kube, namespace: str) -> None:
    from kubernetes import config as kconfig

    if kube.cluster.external:
        pytest.skip("identities are only known for the local test cluster")
    kclient.CoreV1Api(kube.api).create_namespaced_pod(namespace, pod("db-0", {"app": "db"}))
    bob = kconfig.new_client_from_config(config_file=kube.cluster.kubeconfig_for("bob"))
    ex = KubernetesExec(bob)
    try:
        with pytest.raises(ExecError) as e:
            ex.run(namespace, "db-0", None, ["true"], timeout=10)
    finally:
        ex.close()
        bob.close()
    assert e.value.message == (
        f"cannot exec into pod {namespace}/db-0: forbidden (403): the identity may not create pods/exec in this namespace"
    )


def test_exec_target_without_pod_selector_and_job_workloads(kube: Kube, namespace: str) -> None:
    apps, batch, core = kclient.AppsV1Api(kube.api), kclient.BatchV1Api(kube.api), kclient.CoreV1Api(kube.api)
    # The test cluster accepts a Deployment without a selector (a real one would not): restored
    # objects from elsewhere can be that broken.
    no_sel = deployment("legacy")
    del no_sel["spec"]["selector"]
    from dr.drill.api import request

    request(kube.api, "POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", body=no_sel)
    s = step({"name": "q", "type": "exec", "workload": "deployment/legacy", "command": ["true"]})
    r = run_step(s, ctx_for(kube.api, namespace))
    assert r.error == f"deployment/legacy in {namespace} has no pod selector"

    job = {
        "metadata": {"name": "seed"},
        "spec": {
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "x"}]}}
        },
    }
    batch.create_namespaced_job(namespace, job)
    core.create_namespaced_pod(namespace, pod("seed-abc", {"batch.kubernetes.io/job-name": "seed"}))
    set_pod_phase(core, namespace, "seed-abc", "Running")
    apps.create_namespaced_deployment(
        namespace,
        {
            **deployment("api"),
            "spec": {
                **deployment("api")["spec"],
                "selector": {
                    "matchLabels": {"app": "api"},
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}],
                },
            },
        },
    )
    core.create_namespaced_pod(namespace, pod("api-1", {"app": "api", "tier": "b"}))
    core.create_namespaced_pod(namespace, pod("api-2", {"app": "api", "tier": "c"}))
    for name in ("api-1", "api-2"):
        set_pod_phase(core, namespace, name, "Running")
    fake = ScriptedExec()
    for target in ("job/seed", "deployment/api"):
        r = run_step(
            step({"name": "q", "type": "exec", "workload": target, "command": ["true"]}),
            ctx_for(kube.api, namespace, exec=fake),
        )
        assert r.passed, r.message
    assert [c["pod"] for c in fake.calls] == ["seed-abc", "api-1"]


def test_job_failure_without_a_message_and_a_cleanup_that_is_refused(kube: Kube, namespace: str) -> None:
    if kube.cluster.external:
        pytest.skip("impersonates an identity of the local test cluster")
    rbac, batch = kclient.RbacAuthorizationV1Api(kube.api), kclient.BatchV1Api(kube.api)
    rules = [
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list"]},
        {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]},
    ]
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "no-delete"}, "rules": rules})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "alice-no-delete"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "no-delete"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}],
        },
    )
    alice = kclient.ApiClient(kube.api.configuration)
    alice.set_default_header("Impersonate-User", "alice")

    def agent(n: int) -> None:
        job = jobs_in(kube, namespace)[0].metadata.name
        batch.patch_namespaced_job_status(job, namespace, {"status": {"failed": 1}})

    try:
        r = run_step(job_step(), ctx_for(alice, namespace, clock=AgentClock(agent)))
    finally:
        alice.close()
    job = r.details["job"]
    # No pod said anything (and the test cluster serves no logs): the verdict stands alone.
    assert r.message == f"job {job} failed after 1 attempt(s)"
    assert r.details["cleanup"].startswith(
        f"not deleted: DELETE /apis/batch/v1/namespaces/{namespace}/jobs/{job}: "
    )
    assert 'User "alice" cannot delete resource "jobs"' in r.details["cleanup"]
    assert [j.metadata.name for j in jobs_in(kube, namespace)] == [job]


def test_control_characters_of_a_checks_output_are_shown_escaped(kube: Kube, namespace: str) -> None:
    # A check's stderr (or a Job's termination message) is quoted in the step's message, which
    # `dr drill run` and `dr runbook verify` print to the terminal and the reports show: terminal
    # escapes in it (clear the screen, set the title, a CSI as the one C1 byte) reached the
    # terminal of whoever ran or read the drill as they were.
    core = kclient.CoreV1Api(kube.api)
    core.create_namespaced_pod(namespace, pod("db-0", {"app": "db"}))
    set_pod_phase(core, namespace, "db-0", "Running")
    base = {"name": "q", "type": "exec", "selector": "app=db", "command": ["check"]}
    stderr = "\x1b[2J\x1b]0;owned\x07fail\x9b31m\u202edone\x00\n".encode()
    r = run_step(step(base), ctx_for(kube.api, namespace, exec=ScriptedExec(ExecResult(3, b"", stderr))))
    assert not r.passed
    assert r.message.endswith(r"expected 0: \x1b[2J\x1b]0;owned\x07fail\x9b31m\u202edone\x00"), r.message
    assert all(c.isprintable() for c in r.message)


@pytest.mark.parametrize("status", [200, 500])
def test_http_reads_at_most_a_mebibyte_of_a_body(proxy: ProxyStandIn, status: int) -> None:
    # The whole body was read into memory (and decoded, twice its size again), of any status: a
    # checked path that serves a big download or a stream that never ends filled dr's memory.
    s = step({"name": "big", "type": "http", "service": "web", "port": 8080, "path": f"/huge/{status}",
              "timeout": "1s", "expect": {"bodyRegex": "^y"}})  # fmt: skip
    with proxy_api(proxy) as api:
        r = run_step(s, ctx_for(api, "ns"))
    assert not r.passed and r.error is None, r.message
    sent = proxy.hits["huge bytes"]
    assert sent < 48 << 20, f"{sent >> 20} MiB of the body were sent: the client read on"
    why = "body does not match /^y/" if status == 200 else "status 500, expected 200"
    assert r.message.endswith(f"{why} (only the first 1 MiB of the body was read)"), r.message
    assert r.details["body"] == "x" * 300


def test_http_sees_a_redirect_and_does_not_follow_it(proxy: ProxyStandIn) -> None:
    # Redirects were followed: a step expecting the app's 302 (a login page, an old path) saw the
    # page it pointed to, and a Location naming any host (the cloud's metadata service, the object
    # store dr's own pod may reach) was fetched from dr's pod.
    elsewhere: list[str] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            elsewhere.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        target = f"http://127.0.0.1:{server.server_address[1]}/secret"
        with proxy_api(proxy) as api:
            moved = step({"name": "m", "type": "http", "service": "web", "port": 8080, "path": "/moved",
                          "expect": {"status": 302}})  # fmt: skip
            r = run_step(moved, ctx_for(api, "ns"))
            assert r.passed, r.message
            away = step({"name": "a", "type": "http", "service": "web", "port": 8080,
                         "path": f"/moved?to={target}", "timeout": "1s"})  # fmt: skip
            r = run_step(away, ctx_for(api, "ns"))
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert not r.passed, r.message
    assert r.message.endswith(
        f"status 302, expected 200 (a redirect to {target}, not followed: it leaves the service)"
    )
    assert elsewhere == []


def test_http_follows_a_redirect_within_its_service(proxy: ProxyStandIn) -> None:
    # A GET of a path that redirects (to a login page, to add a '/') was checked at the page it names
    # until redirects stopped being followed at all: such a step, valid until then, failed with
    # "status 302, expected 200". Within the step's service it is followed again; elsewhere not.
    clock = AgentClock()

    def get(path: str, **expect: Any) -> StepResult:
        s = step({"name": "r", "type": "http", "service": "web", "port": 8080, "path": path,
                  "timeout": "1s", "expect": expect})  # fmt: skip
        with proxy_api(proxy) as api:
            return run_step(s, ctx_for(api, "ns", clock=clock))

    r = get("/moved?to=healthz")  # relative: the service's own /healthz
    assert r.passed, r.message
    assert r.details["url"] == "/api/v1/namespaces/ns/services/web:8080/proxy/healthz"
    assert get("/moved", status=302).passed  # the redirect itself, when that is what is checked
    r = get("/moved?to=/login")  # the API server's own /login: not the service's
    assert r.message.endswith(
        "status 302, expected 200 (a redirect to /login, not followed: it leaves the service)"
    )
    sleeps = clock.sleeps
    r = get("/loop")
    assert r.message.endswith(
        f"status 302, expected 200 (a redirect to loop, not followed: more than {MAX_REDIRECTS} in a row)"
    )
    # Each try: the GET and MAX_REDIRECTS redirects followed, no more, no fewer. (A multiple of
    # 1 + MAX_REDIRECTS held as well for 3 requests a try, over the 2 tries of the step's 1 s.)
    tries = clock.sleeps - sleeps + 1
    assert proxy.hits["/loop"] == tries * (1 + MAX_REDIRECTS), (tries, proxy.hits)


def test_an_exec_check_on_output_cut_at_a_mebibyte_says_so(kube: Kube, namespace: str) -> None:
    # dr keeps the first 1 MiB of a command's output: a check whose regex looks for its end
    # ("done$") failed on a long output as if the command had not printed it, without a word.
    from dr.kube.exec import MAX_OUTPUT

    core = kclient.CoreV1Api(kube.api)
    core.create_namespaced_pod(namespace, pod("db-0", {"app": "db"}))
    set_pod_phase(core, namespace, "db-0", "Running")
    s = step({"name": "q", "type": "exec", "selector": "app=db", "command": ["dump"],
              "expect": {"stdoutRegex": "done$"}})  # fmt: skip
    kept = b"row\n" * (MAX_OUTPUT // 4)  # what KubernetesExec keeps of a longer output
    r = run_step(s, ctx_for(kube.api, namespace, exec=ScriptedExec(ExecResult(0, kept, b""))))
    assert not r.passed
    assert r.message.endswith("does not match /done$/ (only the first 1 MiB of the output was kept)"), (
        r.message
    )
    short = ScriptedExec(ExecResult(0, b"row\n", b""))
    r = run_step(s, ctx_for(kube.api, namespace, exec=short))
    assert r.message.endswith("does not match /done$/"), r.message


def test_a_regex_that_backtracks_without_end_fails_its_step_in_bounded_time(
    kube: Kube, namespace: str
) -> None:
    # Python's re cannot be interrupted: `(a+)+$` over a run of "a" hung the drill past its own
    # timeout and its signal handlers until the CronJob's deadline killed it, with no report.
    core = kclient.CoreV1Api(kube.api)
    core.create_namespaced_pod(namespace, pod("db-0", {"app": "db"}))
    set_pod_phase(core, namespace, "db-0", "Running")
    s = step({"name": "q", "type": "exec", "selector": "app=db", "command": ["check"], "timeout": "2s",
              "expect": {"stdoutRegex": "(a+)+$"}})  # fmt: skip
    start = time.monotonic()
    r = run_step(s, ctx_for(kube.api, namespace, exec=ScriptedExec(ExecResult(0, b"a" * 40 + b"!", b""))))
    assert time.monotonic() - start < 10
    assert not r.passed and r.message.startswith(
        "`check` in db-0: /(a+)+$/ against the output (41 characters) did not finish within 2 s:"
    ), r.message

    expect = HttpExpect.model_validate({"status": 200, "bodyRegex": "(a+)+$"})
    start = time.monotonic()
    v = evaluate_http(expect, 200, "a" * 40 + "!", regex_seconds=1)
    assert time.monotonic() - start < 5
    assert not v.passed and v.message.startswith("/(a+)+$/ against the body (41 characters) did not finish")
    assert v.details["status"] == 200


def test_http_steps_mask_a_secret_in_their_path(proxy: ProxyStandIn) -> None:
    # An exec step's message masks its command (`PGPASSWORD=…`, `mysql -p…`); an http step quoted
    # its path as written, `?token=…` included, into the message and the report's url.
    s = step({"name": "h", "type": "http", "service": "web", "port": 8080,
              "path": "/healthz?token=s3cr3t-v4lue&x=1"})  # fmt: skip
    with proxy_api(proxy) as api:
        r = run_step(s, ctx_for(api, "ns"))
    assert r.passed, r.message
    assert proxy.requests[-1][1].endswith("/proxy/healthz?token=s3cr3t-v4lue&x=1")  # what is sent: as written
    assert r.message.startswith("GET http://web:8080/healthz?token=[REDACTED]: status 200"), r.message
    assert "s3cr3t" not in r.message and "s3cr3t" not in json.dumps(r.details), r.details


@pytest.mark.parametrize("query", ["api_key=s3cr3t-v4lue", "key=s3cr3t-v4lue", "sig=s3cr3t-v4lue",
                                   "X-Amz-Signature=s3cr3t-v4lue", "x=1#s3cr3t-v4lue"])  # fmt: skip
def test_http_steps_mask_every_query_value_of_their_path(proxy: ProxyStandIn, query: str) -> None:
    # Only names the free-text masking knows (token=, password=) were masked: '?api_key=…', '?key=…'
    # (Google's APIs), a presigned URL's signature went into the message, the report and the terminal.
    # A URL in a message shows no query value (dr.urls.redact_url), as a repository's URL is shown.
    s = step({"name": "h", "type": "http", "service": "web", "port": 8080, "path": f"/healthz?{query}"})
    with proxy_api(proxy) as api:
        r = run_step(s, ctx_for(api, "ns"))
    assert r.passed, r.message
    assert proxy.requests[-1][1].endswith(f"/proxy/healthz?{query.partition('#')[0]}")  # sent as written
    assert "s3cr3t" not in r.message and "s3cr3t" not in json.dumps(r.details), (r.message, r.details)


@pytest.mark.parametrize(
    ("location", "followed"),
    [
        ("login", "/api/v1/namespaces/proxy-ns/services/web:8080/proxy/start/login"),
        (
            "/api/v1/namespaces/proxy-ns/services/web:8080/proxy/a/?b=1",
            "/api/v1/namespaces/proxy-ns/services/web:8080/proxy/a/?b=1",
        ),
        ("../../secrets", None),  # dot segments, resolved here: outside the service
        ("%2e%2e/%2e%2e/%2e%2e/secrets", None),  # the same, left for the API server to decode
        ("a%2f..%2f..%2fsecrets", None),
        ("a%5c..", None),
        ("/api/v1/namespaces/proxy/services/x", None),  # not the service, though it starts like '/proxy'
        ("/api/v1/namespaces/proxy-ns/services/web:8080/proxyfoo", None),
        ("//elsewhere.example/api/v1/namespaces/proxy-ns/services/web:8080/proxy/a", None),
        ("https://api.invalid/api/v1/namespaces/proxy-ns/services/web:8080/proxy/a", None),
    ],
)
def test_a_redirect_is_followed_only_within_the_steps_service(location: str, followed: str | None) -> None:
    # The service's prefix was cut at the first '/proxy' of the path, which a namespace 'proxy-ns' has
    # before it: its redirects counted as leaving the service, and one into a namespace 'proxy' was
    # followed. A dot segment percent-encoded passed the prefix check, and the API server decodes it.
    from dr.drill.steps import _within_service

    s = step({"name": "r", "type": "http", "service": "web", "port": 8080, "path": "/start/here"})
    assert isinstance(s, HttpStep)
    prefix = service_proxy_prefix("proxy-ns", s)
    assert _within_service(prefix, service_proxy_path("proxy-ns", s), location) == followed
