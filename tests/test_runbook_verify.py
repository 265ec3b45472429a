"""``dr runbook verify``: a runbook's verification steps against a live namespace, after a real restore.

The web-app example (``examples/webapp``) deployed in a namespace of its own on
the Kubernetes test cluster, with its content on its volume, and the node
agent (``dr.testkit.agent``) playing the controllers and the kubelet: the
runbook's checks — objects, readiness, the data probe Job, a Job of dr's
image — run where the app is, as a drill runs them in its scratch namespace.
Nothing is restored and no namespace is made; what the steps made (Jobs,
their pods, the copy of dr-config the probe mounts) is gone afterwards.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from dr.kube.client import KubeClient
from dr.testkit import webapp
from dr.testkit.agent import JobRun, NodeAgent, wait_until
from dr.testkit.cluster import install_storage, remove_storage
from tests.conftest import Kube
from tests.helpers import Result, run_dr
from tests.kube_helpers import make_namespace
from tests.kube_stub_server import stub_api
from tests.volume_helpers import create_pod

Capsys = pytest.CaptureFixture[str]
STEPS = ["objects-restored", "web-ready", "uploads-intact", "dr-image-runs"]
DATA_MESSAGE = "PVC uploads: canary/canary.txt sha256 matches, gallery 12 files, index.html sha256 matches"


def step_names(lines: list[str]) -> list[str]:
    """Each step line's "[pass] name" / "[FAIL] name", without its "(type, duration): message"."""
    return [ln.split(" (")[0] for ln in lines]


@dataclass
class Live:
    kc: KubeClient
    agent: NodeAgent
    namespace: str  # where the app runs
    dr_namespace: str  # dr's own (mover.namespace), with dr-config
    config: str
    kubeconfig: str
    home: Path

    def dr(self, capsys: Capsys, *args: str) -> Result:
        return run_dr(capsys, "--config", self.config, "--kubeconfig", self.kubeconfig, *args)

    def runbook(self, name: str, change: Callable[[dict[str, Any]], None]) -> Path:
        """The web-app runbook with ``change`` applied to its spec."""
        doc = yaml.safe_load(webapp.RUNBOOK.read_text())
        change(doc["spec"])
        path = self.home / name
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def runbook_here(self) -> Path:
        """The web-app runbook scoped to the app's namespace itself (checked in place, no ``-n``)."""

        def here(spec: dict[str, Any]) -> None:
            spec["scope"]["namespaces"] = [self.namespace]

        return self.runbook("webapp-here.yaml", here)

    def names(self, path: str, selector: str | None = None) -> list[str]:
        query = {"labelSelector": selector} if selector else None
        return sorted(o["metadata"]["name"] for o in self.kc.get(path, query).get("items", []))

    def namespaces(self) -> list[str]:
        return self.names("/api/v1/namespaces")

    def jobs(self) -> list[str]:
        return self.names(f"/apis/batch/v1/namespaces/{self.namespace}/jobs")

    def pods(self) -> list[str]:
        return self.names(f"/api/v1/namespaces/{self.namespace}/pods")

    def runs(self, kind: str | None = None) -> list[JobRun]:
        """The pods the node agent ran in the app's namespace (of ``kind``: "dr" a job step's,
        "mover" a data probe's), in order."""
        return [
            r for r in self.agent.runs if r.namespace == self.namespace and (kind is None or r.kind == kind)
        ]


@pytest.fixture
def live(
    kube_client: KubeClient, kube: Kube, node_agent: NodeAgent, isolated_home: Path, unique: str
) -> Iterator[Live]:
    """The web-app example running in ``web-<unique>``, dr's namespace ``dr-<unique>`` with dr-config."""
    kc = kube_client
    ns, dr_ns, storage = f"web-{unique}", f"dr-{unique}", f"live-{unique}"
    install_storage(kc, storage, driver=f"{unique}.hostpath.csi.k8s.io", default=True)
    dr_yaml = yaml.safe_dump({"mover": {"image": "ghcr.io/dr-project/dr:test", "namespace": dr_ns}})
    config = isolated_home / "dr.yaml"
    config.write_text(dr_yaml)
    make_namespace(kc, dr_ns)
    kc.call("POST", f"/api/v1/namespaces/{dr_ns}/configmaps", body={
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dr-config"}, "data": {"dr.yaml": dr_yaml}})  # fmt: skip
    node_agent.manage(ns, dr_ns)
    try:
        objects = webapp.manifests()
        for obj in objects:
            if obj["kind"] == "Namespace":
                obj["metadata"]["name"] = ns
            else:
                obj["metadata"]["namespace"] = ns
        webapp.deploy(kc, objects)
        pvc = f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{webapp.PVC}"
        wait_until(lambda: kc.get(pvc).get("status", {}).get("phase") == "Bound", what="uploads bound")
        webapp.write_content(node_agent.volume_dir(ns, webapp.PVC))
        yield Live(kc, node_agent, ns, dr_ns, str(config), kube.kubeconfig, isolated_home)
    finally:
        for name in (ns, dr_ns):
            kc.request("DELETE", f"/api/v1/namespaces/{name}")
        remove_storage(kc, storage)


def test_every_step_passes_in_a_healthy_namespace_and_what_they_made_is_gone(
    capsys: Capsys, live: Live
) -> None:
    before = live.namespaces()

    res = live.dr(
        capsys, "runbook", "verify", str(webapp.RUNBOOK), "--namespace", live.namespace, "-o", "json"
    )

    assert res.code == 0, res.out + res.err
    doc = res.json()
    assert {k: doc[k] for k in ("app", "runbook", "namespaces", "passed")} == {
        "app": "webapp",
        "runbook": str(webapp.RUNBOOK),
        "namespaces": {"webapp": live.namespace},
        "passed": True,
    }
    steps = doc["steps"]
    assert [(s["name"], s["passed"]) for s in steps] == [(n, True) for n in STEPS]
    # The drill's step results, field for field (the report's format).
    fields = {"name", "type", "passed", "message", "duration", "details", "error", "warnings"}
    assert all(set(s) == fields for s in steps)
    assert all(isinstance(s["duration"], float) and s["error"] is None and s["warnings"] == [] for s in steps)
    assert [s["type"] for s in steps] == ["resources", "ready", "data", "job"]
    assert steps[2]["message"] == DATA_MESSAGE
    assert steps[0]["details"]["namespace"] == live.namespace
    job = steps[3]["details"]
    assert (job["namespace"], job["cleanup"]) == (live.namespace, "deleted")
    # What ran where the app is: the data probe and the job step's Job of dr's image.
    ran = sorted((r.kind, r.outcome) for r in live.runs())
    assert ran == [("dr", "succeeded"), ("mover", "succeeded")]
    assert job["job"] in {r.name for r in live.agent.runs}
    # Nothing restored, no namespace made; the Jobs, their pods (the garbage collector's, here the
    # agent's) and the probe's copy of dr-config are gone, the app's own objects untouched.
    assert live.namespaces() == before
    assert live.jobs() == []
    wait_until(lambda: live.pods() == [], what="the step Jobs' pods deleted")
    assert live.names(f"/api/v1/namespaces/{live.namespace}/configmaps") == ["web-config"]
    assert live.names(f"/api/v1/namespaces/{live.namespace}/secrets") == ["web-admin"]


def test_the_data_probe_runs_on_the_node_of_the_pod_using_the_volume_with_its_groups(
    capsys: Capsys, live: Live
) -> None:
    # A ReadWriteOnce volume in use attaches to its pod's node only: a probe pod elsewhere waited
    # (Multi-Attach) until the step's timeout. Placed as the file-system backup mover is: that
    # node, the pod's tolerations, its fsGroup/supplementalGroups (files only its group may read).
    toleration = {"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}
    create_pod(live.kc, live.namespace, "a-cache", [], node="node-9")  # mounts no volume
    create_pod(live.kc, live.namespace, "web-0", [webapp.PVC], node="node-7", tolerations=[toleration],
               fs_group=2000, supplemental_groups=[3000])  # fmt: skip

    res = live.dr(capsys, "runbook", "verify", str(webapp.RUNBOOK), "-n", live.namespace, "-o", "json")

    assert res.code == 0, res.out + res.err
    spec = _probe_run(live)
    assert spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-7"]}]}
        ]
    }
    assert spec["tolerations"] == [toleration]
    assert spec["securityContext"]["supplementalGroups"] == [2000, 3000]


def test_the_data_probe_of_a_read_write_many_volume_is_not_pinned_to_its_pods_node(
    capsys: Capsys, live: Live
) -> None:
    # A ReadWriteMany volume attaches to any node: backup and restore movers are not pinned
    # (52ae2ad), the probe was, and waited Pending for its whole timeout where that node was full.
    claim = f"/api/v1/namespaces/{live.namespace}/persistentvolumeclaims/{webapp.PVC}"
    live.kc.call("PATCH", f"{claim}/status", content_type="application/merge-patch+json",
                 body=json.dumps({"status": {"accessModes": ["ReadWriteMany"]}}).encode())  # fmt: skip
    toleration = {"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}
    create_pod(live.kc, live.namespace, "web-0", [webapp.PVC], node="node-7", tolerations=[toleration],
               fs_group=2000)  # fmt: skip

    res = live.dr(capsys, "runbook", "verify", str(webapp.RUNBOOK), "-n", live.namespace, "-o", "json")

    assert res.code == 0, res.out + res.err
    spec = _probe_run(live)
    assert "affinity" not in spec and "tolerations" not in spec
    assert spec["securityContext"]["supplementalGroups"] == [2000]  # its files' group still


def test_a_read_write_once_pod_volume_in_use_fails_the_data_step_at_once_saying_why(
    capsys: Capsys, live: Live
) -> None:
    # No second pod may mount a ReadWriteOncePod volume while its pod runs: the probe pod
    # could never start, and the step failed only when its timeout ran out.
    pvc = f"/api/v1/namespaces/{live.namespace}/persistentvolumeclaims"
    live.kc.call("POST", pvc, body={
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "exclusive"},
        "spec": {"accessModes": ["ReadWriteOncePod"], "resources": {"requests": {"storage": "1Gi"}}}})  # fmt: skip
    wait_until(lambda: live.kc.get(f"{pvc}/exclusive").get("status", {}).get("phase") == "Bound",
               what="exclusive bound")  # fmt: skip
    create_pod(live.kc, live.namespace, "db-0", ["exclusive"], node="node-3")

    def exclusive(spec: dict[str, Any]) -> None:
        next(s for s in spec["verification"] if s["name"] == "uploads-intact")["pvc"] = "exclusive"

    runbook = live.runbook("webapp-exclusive.yaml", exclusive)

    res = live.dr(capsys, "runbook", "verify", str(runbook), "-n", live.namespace)

    assert res.code == 4, res.out + res.err
    assert (
        f"  step uploads-intact (data): probe of {live.namespace}/exclusive: ReadWriteOncePod volume in use: "
        "no second pod may mount it (in use by pod db-0): its data cannot be probed while that pod runs\n"
    ) in res.err
    # No probe Job was started: it could not have mounted the volume.
    assert [r.kind for r in live.runs()] == ["dr"]


def test_without_namespace_the_runbooks_own_is_checked_one_line_per_step(capsys: Capsys, live: Live) -> None:
    runbook = live.runbook_here()

    res = live.dr(capsys, "runbook", "verify", str(runbook))

    assert res.code == 0, res.out + res.err
    lines = res.out.splitlines()
    assert step_names(lines) == [f"[pass] {n}" for n in STEPS]
    assert lines[2].startswith("[pass] uploads-intact (data, ") and lines[2].endswith(f"s): {DATA_MESSAGE}")
    assert lines[0].startswith("[pass] objects-restored (resources, ")
    assert lines[0].endswith(f"s): in {live.namespace}: 1 deployments.apps, 1 services, 1 configmaps, 1 secrets, "
                             "1 persistentvolumeclaims, 1 networkpolicies.networking.k8s.io")  # fmt: skip
    assert f"verifying webapp in {live.namespace}: 4 step(s)" in res.err


def test_each_step_line_is_printed_as_the_step_finishes(
    capsys: Capsys, live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lines came only after the last step: a long run showed nothing for minutes.
    from dr.drill import verify

    real = verify.run_step
    shown: list[str] = []  # stdout so far, before each step
    before: list[list[str]] = []

    def recording(step: Any, ctx: Any) -> Any:
        shown.extend(capsys.readouterr().out.splitlines())
        before.append(step_names(shown))
        return real(step, ctx)

    monkeypatch.setattr(verify, "run_step", recording)

    res = live.dr(capsys, "runbook", "verify", str(webapp.RUNBOOK), "-n", live.namespace)

    assert res.code == 0, res.out + res.err
    passed = [f"[pass] {n}" for n in STEPS]
    assert before == [passed[:i] for i in range(len(STEPS))]
    assert step_names([*shown, *res.out.splitlines()]) == passed


def test_ctrl_c_after_the_first_step_has_shown_its_line(
    capsys: Capsys, live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dr.drill import verify

    real = verify.run_step

    def stopped_at_the_second(step: Any, ctx: Any) -> Any:
        if step.name == STEPS[1]:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises here, at once
        return real(step, ctx)

    monkeypatch.setattr(verify, "run_step", stopped_at_the_second)

    res = live.dr(capsys, "runbook", "verify", str(webapp.RUNBOOK), "-n", live.namespace)

    assert (res.code, res.err.splitlines()[-1]) == (130, "interrupted"), res.out + res.err
    (line,) = res.out.splitlines()
    assert line.startswith(f"[pass] {STEPS[0]} (resources, ")


def test_a_failing_step_exits_4_naming_it_and_the_others_still_run(capsys: Capsys, live: Live) -> None:
    def thirteen(spec: dict[str, Any]) -> None:
        step = next(s for s in spec["verification"] if s["name"] == "uploads-intact")
        next(c for c in step["checks"] if c["path"] == "gallery")["count"] = 13

    runbook = live.runbook("webapp-wrong-count.yaml", thirteen)

    res = live.dr(capsys, "runbook", "verify", str(runbook), "-n", live.namespace)

    assert res.code == 4, res.out + res.err
    assert (
        f"error: verification of webapp in {live.namespace} failed: 1 of 4 step(s) did not pass\n"
        "  step uploads-intact (data): PVC uploads: gallery: 12 files, expected 13\n"
    ) in res.err
    lines = res.out.splitlines()
    assert step_names(lines) == [
        "[pass] objects-restored", "[pass] web-ready", "[FAIL] uploads-intact", "[pass] dr-image-runs"
    ]  # fmt: skip
    assert lines[2].endswith("s): PVC uploads: gallery: 12 files, expected 13")
    assert live.jobs() == []

    res = live.dr(capsys, "runbook", "verify", str(runbook), "-n", live.namespace, "-o", "json")
    assert res.code == 4
    doc = res.json()
    assert doc["passed"] is False
    assert [s["name"] for s in doc["steps"] if not s["passed"]] == ["uploads-intact"]


def test_a_missing_namespace_is_invalid_input_in_one_line(
    capsys: Capsys, kube: Kube, kube_client: KubeClient, isolated_home: Path, unique: str
) -> None:
    before = sorted(n["metadata"]["name"] for n in kube_client.get("/api/v1/namespaces")["items"])

    res = run_dr(capsys, "--kubeconfig", kube.kubeconfig, "runbook", "verify", str(webapp.RUNBOOK),
                 "-n", f"gone-{unique}")  # fmt: skip

    assert (res.code, res.out) == (2, "")
    assert res.err == f"error: namespace gone-{unique} not found: no step of webapp was run\n"
    after = sorted(n["metadata"]["name"] for n in kube_client.get("/api/v1/namespaces")["items"])
    assert after == before


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--namespace-mapping", "shop=x"],
         "error: --namespace-mapping shop=x: 'shop' is not a namespace of the runbook's scope (webapp)\n"),
        (["-n", "Not_A_Name"], "error: --namespace: 'Not_A_Name' is not a namespace name\n"),
        (["-n", "a", "--namespace-mapping", "webapp=b"],
         "error: --namespace a and --namespace-mapping webapp=b name different namespaces for webapp\n"),
    ],
)  # fmt: skip
def test_namespace_options_that_cannot_be_meant_are_invalid_input(
    capsys: Capsys, isolated_home: Path, args: list[str], line: str
) -> None:
    # Checked before the cluster is asked anything: no kubeconfig needed.
    res = run_dr(capsys, "runbook", "verify", str(webapp.RUNBOOK), *args)
    assert (res.code, res.out, res.err) == (2, "", line)


def test_an_invalid_runbook_is_reported_as_validate_does_by_file_and_line(
    capsys: Capsys, isolated_home: Path
) -> None:
    text = webapp.RUNBOOK.read_text().replace("          count: 12", "          count: twelve")
    path = isolated_home / "broken.yaml"
    path.write_text(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "count: twelve" in ln)

    res = run_dr(capsys, "runbook", "verify", str(path))
    validate = run_dr(capsys, "runbook", "validate", str(path))

    assert (res.code, res.out) == (2, "")
    assert f"  {path}:{line}:11: spec.verification[2].checks[1].count: " in res.err
    # The same problem lines as `dr runbook validate` prints.
    assert [ln for ln in res.err.splitlines() if ln.startswith("  ")] == [
        ln for ln in validate.err.splitlines() if ln.startswith("  ")
    ]


def test_a_data_step_without_dr_config_to_copy_fails_at_once_saying_why(capsys: Capsys, live: Live) -> None:
    live.kc.call("DELETE", f"/api/v1/namespaces/{live.dr_namespace}/configmaps/dr-config")

    res = live.dr(capsys, "runbook", "verify", str(webapp.RUNBOOK), "-n", live.namespace)

    assert res.code == 4, res.out + res.err
    why = (
        f"the probe Job needs the ConfigMap dr-config in {live.namespace}, and it could not be copied "
        f"there from {live.dr_namespace}"
    )
    assert f"  step uploads-intact (data): {why}\n" in res.err
    # No probe Job was started (its pod could not have mounted the ConfigMap).
    assert [r.kind for r in live.runs()] == ["dr"]


def test_the_runbook_pages_verify_lines_run_as_they_stand(capsys: Capsys, live: Live) -> None:
    runbook = live.runbook_here()
    page = live.dr(capsys, "runbook", "render", str(runbook))
    assert page.code == 0, page.err
    in_place, new_namespace = [
        shlex.split(ln)
        for ln in page.out.replace(" \\\n", " ").splitlines()  # long lines go on after a backslash
        if ln.startswith("dr runbook verify ")
    ]
    assert in_place == ["dr", "runbook", "verify", str(runbook)]
    assert new_namespace == [*in_place, "--namespace", f"{live.namespace}-restored"]

    res = live.dr(capsys, *in_place[1:])
    assert res.code == 0, res.out + res.err
    assert step_names(res.out.splitlines()) == [f"[pass] {n}" for n in STEPS]
    # Nothing was restored into a new namespace here: the line says so, and runs no step.
    res = live.dr(capsys, *new_namespace[1:])
    assert (res.code, res.out) == (2, "")
    assert res.err.endswith(
        f"error: namespace {live.namespace}-restored not found: no step of webapp was run\n"
    )


@pytest.mark.parametrize(
    ("sig", "code", "line"),
    [
        ("SIGINT", 130, "interrupted"),
        ("SIGTERM", 143, "terminated (SIGTERM)"),
        # The terminal closed under the verify (an ssh session dropped): cleaned up too.
        ("SIGHUP", 129, "terminated (SIGHUP)"),
    ],
)
def test_a_signal_during_a_step_deletes_what_the_steps_made_and_exits_with_its_code(
    capsys: Capsys, live: Live, monkeypatch: pytest.MonkeyPatch, sig: str, code: int, line: str
) -> None:
    from dr.kube import jobs

    follow = jobs.follow_job
    seen: list[tuple[list[str], list[str]]] = []

    def stopped_while_following(*args: Any, **kwargs: Any) -> Any:
        # The data step's probe Job is running, on the copy of dr-config made for it.
        seen.append((live.jobs(), live.names(f"/api/v1/namespaces/{live.namespace}/configmaps")))
        os.kill(os.getpid(), getattr(signal, sig))
        time.sleep(5)  # the handler raises here, at once
        return follow(*args, **kwargs)

    monkeypatch.setattr(jobs, "follow_job", stopped_while_following)

    res = live.dr(capsys, "runbook", "verify", str(webapp.RUNBOOK), "-n", live.namespace)

    assert res.code == code, res.out + res.err
    assert res.err.splitlines()[-1] == line
    [(jobs_then, maps_then)] = seen
    assert len(jobs_then) == 1 and jobs_then[0].startswith("dr-probe-uploads-")
    assert maps_then == ["dr-config", "web-config"]
    # Unwound: the probe Job and the copy of dr-config are gone, the app's own objects untouched.
    assert live.jobs() == []
    assert live.names(f"/api/v1/namespaces/{live.namespace}/configmaps") == ["web-config"]
    assert live.names(f"/api/v1/namespaces/{live.namespace}/secrets") == ["web-admin"]


def test_ctrl_c_during_a_job_step_deletes_its_job_and_the_dr_config_copy(
    capsys: Capsys, live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dr.drill import steps

    real = steps.request
    seen: list[tuple[list[str], list[str]]] = []

    def stopped_while_polling(api: Any, method: str, path: str, **kwargs: Any) -> Any:
        if method == "GET" and "/jobs/" in path and not seen:
            # The job step's Job is running (after the data step, whose copy of dr-config is still there).
            seen.append((live.jobs(), live.names(f"/api/v1/namespaces/{live.namespace}/configmaps")))
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises here, at once
        return real(api, method, path, **kwargs)

    monkeypatch.setattr(steps, "request", stopped_while_polling)

    res = live.dr(capsys, "runbook", "verify", str(webapp.RUNBOOK), "-n", live.namespace)

    assert (res.code, res.err.splitlines()[-1]) == (130, "interrupted"), res.out + res.err
    [(jobs_then, maps_then)] = seen
    assert len(jobs_then) == 1 and jobs_then[0].startswith("drill-dr-image-runs-")
    assert maps_then == ["dr-config", "web-config"]
    assert live.jobs() == []
    assert live.names(f"/api/v1/namespaces/{live.namespace}/configmaps") == ["web-config"]


def test_ctrl_c_as_the_job_steps_job_is_created_deletes_it(
    capsys: Capsys, live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The POST has made the Job, its answer has not reached the step yet: the Job is dr's all the same.
    from dr.drill import steps

    real = steps.request
    made: list[list[str]] = []

    def stopped_as_created(api: Any, method: str, path: str, **kwargs: Any) -> Any:
        answer = real(api, method, path, **kwargs)
        if method == "POST" and path.endswith("/jobs") and "drill-" in kwargs["body"]["metadata"]["name"]:
            made.append(live.jobs())
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises here, at once
        return answer

    monkeypatch.setattr(steps, "request", stopped_as_created)

    res = live.dr(capsys, "runbook", "verify", str(webapp.RUNBOOK), "-n", live.namespace)

    assert (res.code, res.err.splitlines()[-1]) == (130, "interrupted"), res.out + res.err
    [jobs_then] = made
    assert len(jobs_then) == 1 and jobs_then[0].startswith("drill-dr-image-runs-")
    assert live.jobs() == []


def _grant(live: Live, user: str, namespace: str, rules: list[dict[str, Any]]) -> None:
    rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/" + namespace
    live.kc.call("POST", f"{rbac}/roles", body={"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                                                "metadata": {"name": f"{user}-verify"}, "rules": rules})  # fmt: skip
    live.kc.call("POST", f"{rbac}/rolebindings", body={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": f"{user}-verify"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{user}-verify"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})  # fmt: skip


@pytest.mark.parametrize("undeletable", ["configmaps", "jobs"])
def test_what_cannot_be_deleted_again_is_a_warning_in_json_and_on_stderr_even_quiet(
    capsys: Capsys, live: Live, kube: Kube, undeletable: str
) -> None:
    if kube.cluster.external:
        pytest.skip("runs as an identity of the local test cluster")
    # An identity that may create, but not delete, the copy of dr-config (or the Jobs) in the app's namespace.
    reads = ["get", "list", "watch"]
    verbs = {
        kind: [*reads, "create"] + ([] if kind == undeletable else ["delete"])
        for kind in ("configmaps", "jobs")
    }
    _grant(live, "bob", live.namespace, [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": verbs["configmaps"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": verbs["jobs"]},
        {"apiGroups": [""], "resources": ["pods", "pods/log", "persistentvolumeclaims", "events"], "verbs": reads},
    ])  # fmt: skip
    _grant(live, "bob", live.dr_namespace, [{"apiGroups": [""], "resources": ["configmaps"], "verbs": reads}])
    rb = live.runbook(
        "data-and-job.yaml",
        lambda spec: spec.update(
            verification=[s for s in spec["verification"] if s["type"] in ("data", "job")]
        ),
    )
    bob = kube.cluster.kubeconfig_for("bob")

    res = run_dr(capsys, "--config", live.config, "--kubeconfig", bob, "--quiet",
                 "runbook", "verify", str(rb), "-n", live.namespace, "-o", "json")  # fmt: skip

    assert res.code == 0, res.out + res.err
    doc = res.json()
    assert [(s["name"], s["passed"]) for s in doc["steps"]] == [
        ("uploads-intact", True),
        ("dr-image-runs", True),
    ]
    forbidden = f'User "bob" cannot delete resource "{undeletable}"'
    warnings = doc["warnings"]
    if undeletable == "configmaps":
        assert len(warnings) == 1, warnings
        assert warnings[0].startswith(f"cannot delete the copy of ConfigMap dr-config in {live.namespace}: ")
        assert live.names(f"/api/v1/namespaces/{live.namespace}/configmaps") == ["dr-config", "web-config"]
    else:
        job = doc["steps"][1]["details"]["job"]
        left = live.jobs()
        probe = [j for j in left if j.startswith("dr-probe-uploads-")]
        assert sorted(left) == sorted([job, *probe]) and len(probe) == 1, left
        assert len(warnings) == 2, warnings
        assert warnings[0].startswith(f"step dr-image-runs (job): cannot delete Job {live.namespace}/{job}: ")
        assert warnings[1].startswith(f"cannot delete Job {live.namespace}/{probe[0]}: ")
    assert all(forbidden in w for w in warnings), warnings
    # Not progress: on stderr with --quiet too, one line each.
    assert res.err.splitlines() == [f"warning: {w}" for w in warnings]


def test_a_job_left_by_a_job_step_that_failed_is_a_warning_too(
    capsys: Capsys, live: Live, kube: Kube
) -> None:
    # An identity that may create the step's Job but neither read nor delete it: the step fails
    # reading the Job's status, its Job stays, and that is reported like a finished step's Job
    # (the failed step's result kept no details, so nothing said the Job was left behind).
    if kube.cluster.external:
        pytest.skip("runs as an identity of the local test cluster")
    reads = ["get", "list", "watch"]
    _grant(live, "bob", live.namespace, [
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["pods", "pods/log", "events"], "verbs": reads},
    ])  # fmt: skip
    rb = live.runbook(
        "job.yaml",
        lambda spec: spec.update(verification=[s for s in spec["verification"] if s["type"] == "job"]),
    )
    bob = kube.cluster.kubeconfig_for("bob")

    res = run_dr(capsys, "--config", live.config, "--kubeconfig", bob, "--quiet",
                 "runbook", "verify", str(rb), "-n", live.namespace, "-o", "json")  # fmt: skip

    assert res.code == 4, res.out + res.err
    doc = res.json()
    (step,) = doc["steps"]
    assert not step["passed"] and 'cannot get resource "jobs"' in step["error"], step
    job = step["details"]["job"]
    assert live.jobs() == [job]
    (warning,) = doc["warnings"]
    assert warning.startswith(f"step dr-image-runs (job): cannot delete Job {live.namespace}/{job}: "), (
        warning
    )
    assert 'User "bob" cannot delete resource "jobs"' in warning
    # The agent runs the Job left behind; gone before the namespace is (its pod would have none).
    wait_until(lambda: live.runs("dr"), what="the left Job's pod")
    live.kc.call("DELETE", f"/apis/batch/v1/namespaces/{live.namespace}/jobs/{job}")


def _data_step_as_bob(
    capsys: Capsys, live: Live, kube: Kube, app_rules: list[dict[str, Any]], output: str = "json"
) -> Result:
    """``runbook verify -o OUTPUT`` of the data step alone, as bob with the rights to run the probe plus ``app_rules``."""
    rw = ["get", "list", "watch", "create", "delete"]
    _grant(live, "bob", live.namespace, [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": rw},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": rw},
        *app_rules,
    ])  # fmt: skip
    _grant(
        live, "bob", live.dr_namespace, [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
    )
    rb = live.runbook(
        "data.yaml",
        lambda spec: spec.update(verification=[s for s in spec["verification"] if s["type"] == "data"]),
    )
    bob = kube.cluster.kubeconfig_for("bob")
    return run_dr(capsys, "--config", live.config, "--kubeconfig", bob,
                  "runbook", "verify", str(rb), "-n", live.namespace, "-o", output)  # fmt: skip


def _probe_warnings(res: Result) -> list[str]:
    """The data probe's warnings among the log lines (JSON: stderr is no terminal) on stderr."""
    records = [json.loads(ln) for ln in res.err.splitlines() if ln.startswith("{")]
    return [r["msg"] for r in records if r["logger"] == "dr.drill.probe_job" and r["level"] == "warning"]


def _probe_run(live: Live) -> dict[str, Any]:
    """The pod spec of the one probe Job the node agent ran in the app's namespace."""
    (probe,) = live.runs("mover")
    spec: dict[str, Any] = probe.manifest["spec"]["template"]["spec"]
    return spec


def test_a_probe_that_cannot_list_pods_fails_at_once_saying_why(
    capsys: Capsys, live: Live, kube: Kube
) -> None:
    # The probe's answer is read from its own pod's status: without the right to list pods it ran to
    # its end and then said only "the Job gave no answer". It fails at once, naming the right.
    if kube.cluster.external:
        pytest.skip("runs as an identity of the local test cluster")
    create_pod(live.kc, live.namespace, "web-0", [webapp.PVC], node="node-7")

    res = _data_step_as_bob(capsys, live, kube, [
        {"apiGroups": [""], "resources": ["persistentvolumeclaims", "pods/log"], "verbs": ["get"]},
    ])  # fmt: skip

    assert res.code == 4, res.out + res.err
    assert res.json()["steps"][0]["message"] == (
        f"probe of {live.namespace}/{webapp.PVC}: cannot list pods in {live.namespace}, which the probe "
        f'needs (its answer is read from its pod): 403 Forbidden: pods is forbidden: User "bob" cannot '
        f'list resource "pods" in API group "" in the namespace "{live.namespace}"'
    )
    # No probe Job was started.
    assert live.runs("mover") == []
    assert live.jobs() == []


def test_a_pod_list_failing_for_another_reason_only_warns_and_leaves_the_probe_unplaced(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    # Not a missing right (403, above) but a passing failure: the probe still runs, on no node of
    # its choosing, and the step's result says why. A stand-in API server answers the
    # pod list 503 (the test cluster never does) and refuses the probe's Job; the warning stays
    # in the result of the step that then failed.
    from dr.config import MoverOptions
    from dr.drill.probe_job import JobDataProbe
    from dr.drill.steps import StepContext, run_step
    from dr.kube.client import RetryPolicy, connect
    from dr.runbook.model import DataStep

    step = DataStep.model_validate(
        {"name": "files-intact", "type": "data", "pvc": "files", "checks": [{"path": "x", "minCount": 0}]}
    )
    warning = "cannot list pods in app (the probe of files is not placed next to them): 503 ServiceUnavailable: etcd is away"
    with stub_api() as api:
        api.script("/api/v1/namespaces/app/pods",
                   (503, {"kind": "Status", "reason": "ServiceUnavailable", "message": "etcd is away"}, {}))  # fmt: skip
        api.script("/apis/batch/v1/namespaces/app/jobs",
                   (403, {"kind": "Status", "reason": "Forbidden", "message": "no Jobs here"}, {}))  # fmt: skip
        kube = connect(api.kubeconfig(tmp_path), retry=RetryPolicy(attempts=1))
        probe = JobDataProbe(kube, MoverOptions(), run_id="x")
        with caplog.at_level("DEBUG", logger="dr.drill.probe_job"):
            result = run_step(step, StepContext(api=None, namespace="app", exec=None, data_probe=probe))  # type: ignore[arg-type]
    # Logged at debug only: the command prints the step's warnings (a warning log line said it twice).
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "dr.drill.probe_job"] == [
        ("DEBUG", warning)
    ]
    assert not result.passed and result.error is not None and "no Jobs here" in result.error, result
    assert result.warnings == [warning]
    assert result.warning_lines() == [f"step files-intact (data): {warning}"]
    # It went on to ask for its Job (unplaced) rather than failing at the pod list.
    assert [p.split("?")[0] for m, p, _ in api.requests if m == "POST"] == [
        "/apis/batch/v1/namespaces/app/jobs"
    ]


@pytest.mark.parametrize("output", ["json", "table"])
def test_a_probe_that_cannot_read_its_claim_skips_the_access_modes_and_runs(
    capsys: Capsys, live: Live, kube: Kube, monkeypatch: pytest.MonkeyPatch, output: str
) -> None:
    if kube.cluster.external:
        pytest.skip("runs as an identity of the local test cluster")
    create_pod(live.kc, live.namespace, "web-0", [webapp.PVC], node="node-7")
    if output == "table":
        monkeypatch.setenv("DR_LOG_FORMAT", "text")  # log lines as on a terminal

    res = _data_step_as_bob(capsys, live, kube, [
        {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]},
    ], output)  # fmt: skip

    warning = (
        f"cannot read PVC {live.namespace}/{webapp.PVC} (its access modes are not checked): 403 Forbidden: "
        f'persistentvolumeclaims "{webapp.PVC}" is forbidden: User "bob" cannot get resource '
        f'"persistentvolumeclaims" in API group "" in the namespace "{live.namespace}"'
    )
    assert res.code == 0, res.out + res.err
    # Said once on stderr, as a "warning:" line of the run (also with -o json): not also as the probe's log line.
    assert f"warning: step uploads-intact (data): {warning}" in res.err.splitlines()
    if output == "table":
        assert (res.out + res.err).count(warning) == 1, res.out + res.err
        return
    assert res.err.count(warning) == 1 and _probe_warnings(res) == [], res.err
    doc = res.json()
    assert [(s["name"], s["passed"], s["message"], s["warnings"]) for s in doc["steps"]] == [
        ("uploads-intact", True, DATA_MESSAGE, [warning])
    ]
    # Among the run's warnings, as what it could not delete again is.
    assert doc["warnings"] == [f"step uploads-intact (data): {warning}"]
    # Still placed next to the pod using the claim.
    terms = _probe_run(live)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms == {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-7"]}]}
        ]
    }
    assert live.jobs() == []
