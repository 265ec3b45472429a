"""Admission policies in deploy/policies/ and the drill guard, checked against sample objects.

No Kyverno, Gatekeeper or `opa` binary is obtainable here (not in Debian,
no wheel of `opa`). So:

* the Gatekeeper Rego is *evaluated* with regorus (the `opa-eval` wheel)
  when it is installed, and must agree with the Python predicates below;
* the Kyverno rules' JMESPath conditions are *evaluated* with the
  `jmespath` library (Kyverno's expression language; `not_null` is standard
  JMESPath), the rest of their structure is checked;
* the intent of each rule is a plain Python predicate over the same sample
  objects, and ``dr.deploy.policy_check`` (used by ``dr status``) is tested
  against the real test cluster.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jmespath
import pytest
import yaml

from dr.config import Config, Resources, load_config_file
from dr.deploy.policies import policy_files
from dr.deploy.policy_check import covered_by_policy, namespaces_without_backup_policy
from tests.deploy_support import DEPLOY, api_as, kustomize_build, pod_specs
from tests.helpers import run_dr
from tests.servers import TestCluster

POLICIES = DEPLOY / "policies"
KYVERNO = POLICIES / "kyverno"
GATEKEEPER = POLICIES / "gatekeeper"


def _load(path: Path) -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert isinstance(doc, dict)
    return doc


# --------------------------------------------------------------------------- samples and the rules' intent


def ns(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


NAMESPACES = [
    (ns("shop", **{"dr.dev/backup-policy": "shop-nightly"}), False),
    (ns("legacy", **{"dr.dev/backup-policy": "none"}), False),
    (ns("unlabelled"), True),
    (ns("empty-label", **{"dr.dev/backup-policy": ""}), True),
    (ns("kube-system"), False),
    (ns("kube-node-lease"), False),
    (ns("dr-system"), False),
    (ns("drill-x1", **{"dr.dev/drill": "true"}), False),
    (ns("fake-drill", **{"dr.dev/drill": "false"}), True),
]


def label_violation(namespace: dict[str, Any]) -> bool:
    """Intent (a): an application namespace without a non-empty dr.dev/backup-policy label."""
    name, labels = namespace["metadata"]["name"], namespace["metadata"].get("labels", {})
    if name.startswith("kube-") or name == "dr-system" or labels.get("dr.dev/drill") == "true":
        return False
    return not labels.get("dr.dev/backup-policy")


def pod(kind: str, pod_ctx: dict[str, Any] | None, *containers: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [c for c in containers if not c.get("init")]}
    inits = [{k: v for k, v in c.items() if k != "init"} for c in containers if c.get("init")]
    if inits:
        spec["initContainers"] = inits
    if pod_ctx is not None:
        spec["securityContext"] = pod_ctx
    meta = {"name": "w"}
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
    if kind == "CronJob":
        return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta,
                "spec": {"jobTemplate": {"spec": {"template": {"spec": spec}}}}}  # fmt: skip
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": {"template": {"spec": spec}}}


def c(name: str, **sc: Any) -> dict[str, Any]:
    init = sc.pop("init", False)
    out: dict[str, Any] = {"name": name, "image": "x"}
    if sc:
        out["securityContext"] = sc
    if init:
        out["init"] = True
    return out


POD_CASES = [
    ("pod nonroot", (None, c("a", runAsNonRoot=True)), False),
    ("pod uid", ({"runAsUser": 1000}, c("a")), False),
    ("pod-level nonroot", ({"runAsNonRoot": True}, c("a"), c("b")), False),
    ("nothing set", (None, c("a")), True),
    ("uid 0", ({"runAsUser": 0}, c("a")), True),
    ("nonroot but uid 0", ({"runAsNonRoot": True, "runAsUser": 0}, c("a")), True),
    ("container overrides pod uid to 0", ({"runAsUser": 1000}, c("a", runAsUser=0)), True),
    ("container overrides nonroot false", ({"runAsNonRoot": True}, c("a", runAsNonRoot=False)), True),
    ("container fixes root pod", ({"runAsUser": 0}, c("a", runAsUser=10)), False),
    ("one bad container of two", ({}, c("a", runAsUser=10), c("b")), True),
    ("root init container", ({"runAsNonRoot": True}, c("a"), c("i", init=True, runAsUser=0)), True),
    ("nonroot false, uid 5", ({"runAsNonRoot": False, "runAsUser": 5}, c("a")), False),
]
WORKLOAD_KINDS = ["Pod", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"]


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "Pod":
        return dict(obj["spec"])
    if obj["kind"] == "CronJob":
        return dict(obj["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(obj["spec"]["template"]["spec"])


def root_violations(obj: dict[str, Any]) -> list[str]:
    """Intent (b): containers whose effective user may be root."""
    spec = _pod_spec(obj)
    pod_ctx = spec.get("securityContext", {})
    bad = []
    for cont in (
        spec.get("containers", []) + spec.get("initContainers", []) + spec.get("ephemeralContainers", [])
    ):
        own = cont.get("securityContext", {})
        uid = own.get("runAsUser", pod_ctx.get("runAsUser"))
        non_root = own.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
        if not ((uid is not None and uid > 0) or (non_root is True and uid != 0)):
            bad.append(cont["name"])
    return bad


def test_intent_predicates_on_samples() -> None:
    for namespace, expected in NAMESPACES:
        assert label_violation(namespace) is expected, namespace["metadata"]["name"]
    for case, (pod_ctx, *conts), expected in POD_CASES:
        for kind in WORKLOAD_KINDS:
            assert bool(root_violations(pod(kind, pod_ctx, *conts))) is expected, (case, kind)


# --------------------------------------------------------------------------- Kyverno


def test_kyverno_policies_structure() -> None:
    files = sorted(KYVERNO.glob("*.yaml"))
    assert [f.name for f in files] == [
        "generate-default-deny-network-policy.yaml",
        "require-backup-policy-label.yaml",
        "require-run-as-non-root.yaml",
    ]
    for f in files:
        doc = _load(f)
        assert doc["apiVersion"] == "kyverno.io/v1" and doc["kind"] == "ClusterPolicy", f.name
        assert doc["metadata"]["annotations"]["policies.kyverno.io/description"]
        for rule in doc["spec"]["rules"]:
            assert rule["name"] and rule["match"]["any"], f.name
            assert sum(k in rule for k in ("validate", "generate", "mutate", "verifyImages")) == 1


def _excluded_by_kyverno(rule: dict[str, Any], namespace: dict[str, Any]) -> bool:
    """Kyverno's exclude block (names with wildcards, label selector) applied to a Namespace."""
    name, labels = namespace["metadata"]["name"], namespace["metadata"].get("labels", {})
    for entry in rule.get("exclude", {}).get("any", []):
        res = entry["resources"]
        if any(re.fullmatch(p.replace("*", ".*"), name) for p in res.get("names", [])):
            return True
        sel = res.get("selector", {}).get("matchLabels")
        if sel and all(labels.get(k) == v for k, v in sel.items()):
            return True
    return False


def _kyverno_pattern_matches(pattern: Any, value: Any) -> bool:
    """The part of Kyverno's pattern language our policy uses: nested maps and the "?*" wildcard."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            k in value and _kyverno_pattern_matches(v, value[k]) for k, v in pattern.items()
        )
    if pattern == "?*":
        return isinstance(value, str) and len(value) >= 1
    return bool(pattern == value)


def test_kyverno_backup_label_rule_matches_intent() -> None:
    rule = _load(KYVERNO / "require-backup-policy-label.yaml")["spec"]["rules"][0]
    assert rule["match"]["any"][0]["resources"]["kinds"] == ["Namespace"]
    assert rule["validate"]["failureAction"] == "Enforce"
    for namespace, expected in NAMESPACES:
        excluded = _excluded_by_kyverno(rule, namespace)
        violates = not excluded and not _kyverno_pattern_matches(rule["validate"]["pattern"], namespace)
        assert violates is expected, namespace["metadata"]["name"]


_VAR = re.compile(r"^\{\{\s*(.+?)\s*\}\}$")


def _kyverno_eval(template: str, context: dict[str, Any]) -> Any:
    m = _VAR.match(template)
    assert m, template
    return jmespath.search(m.group(1), context)


def _kyverno_condition(cond: dict[str, Any], context: dict[str, Any]) -> bool:
    key = _kyverno_eval(cond["key"], context)
    op, value = cond["operator"], cond["value"]
    ops = {
        "Equals": lambda: key == value,
        "NotEquals": lambda: key != value,
        "LessThanOrEquals": lambda: key <= value,
    }
    return bool(ops[op]())


def kyverno_root_violations(rule: dict[str, Any], obj: dict[str, Any]) -> list[str]:
    """Evaluate the rule's foreach/deny the way Kyverno does, for a Pod."""
    (each,) = rule["validate"]["foreach"]
    context = {"request": {"object": obj}}
    bad = []
    for element in jmespath.search(each["list"], context) or []:
        ctx = {**context, "element": element}
        conds = each["deny"]["conditions"]
        deny = all(_kyverno_condition(x, ctx) for x in conds.get("all", [])) and (
            not conds.get("any") or any(_kyverno_condition(x, ctx) for x in conds["any"])
        )
        if deny:
            bad.append(element["name"])
    return bad


def test_kyverno_run_as_non_root_matches_intent() -> None:
    doc = _load(KYVERNO / "require-run-as-non-root.yaml")
    rule = doc["spec"]["rules"][0]
    assert rule["match"]["any"][0]["resources"]["kinds"] == ["Pod"]
    # Pod templates of controllers through autogen, which rewrites request.object.spec.
    autogen = doc["metadata"]["annotations"]["pod-policies.kyverno.io/autogen-controllers"].split(",")
    assert {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet"} <= set(autogen)
    assert "request.object.spec" in rule["validate"]["foreach"][0]["list"]
    for case, (pod_ctx, *conts), expected in POD_CASES:
        obj = pod("Pod", pod_ctx, *conts)
        assert kyverno_root_violations(rule, obj) == root_violations(obj), case
        assert bool(root_violations(obj)) is expected, case


def test_kyverno_generates_default_deny_for_new_namespaces() -> None:
    doc = _load(KYVERNO / "generate-default-deny-network-policy.yaml")
    assert doc["spec"]["generateExisting"] is False
    rule = doc["spec"]["rules"][0]
    gen = rule["generate"]
    assert (gen["apiVersion"], gen["kind"]) == ("networking.k8s.io/v1", "NetworkPolicy")
    assert gen["namespace"] == "{{request.object.metadata.name}}" and gen["synchronize"] is True
    assert gen["data"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    # Same exemptions as the label rule.
    label_rule = _load(KYVERNO / "require-backup-policy-label.yaml")["spec"]["rules"][0]
    assert rule["exclude"] == label_rule["exclude"]
    for namespace, _ in NAMESPACES:
        name = namespace["metadata"]["name"]
        expect_excluded = name.startswith("kube-") or name == "dr-system" or name == "drill-x1"
        assert _excluded_by_kyverno(rule, namespace) is expect_excluded, name


# --------------------------------------------------------------------------- Gatekeeper


def _template(name: str) -> dict[str, Any]:
    return _load(GATEKEEPER / f"{name}-template.yaml")


def _constraint(name: str) -> dict[str, Any]:
    return _load(GATEKEEPER / f"{name}-constraint.yaml")


@pytest.mark.parametrize("name", ["backup-policy-label", "run-as-non-root", "network-policy"])
def test_gatekeeper_template_and_constraint_agree(name: str) -> None:
    template, constraint = _template(name), _constraint(name)
    assert template["apiVersion"] == "templates.gatekeeper.sh/v1" and template["kind"] == "ConstraintTemplate"
    kind = template["spec"]["crd"]["spec"]["names"]["kind"]
    assert template["metadata"]["name"] == kind.lower()
    assert constraint["apiVersion"] == "constraints.gatekeeper.sh/v1beta1" and constraint["kind"] == kind
    (target,) = template["spec"]["targets"]
    assert target["target"] == "admission.k8s.gatekeeper.sh"
    assert f"package {kind.lower()}" in target["rego"]
    assert "violation contains" in target["rego"]
    props = (
        template["spec"]["crd"]["spec"].get("validation", {}).get("openAPIV3Schema", {}).get("properties", {})
    )
    assert set(constraint["spec"].get("parameters", {})) <= set(props)


def test_gatekeeper_sync_config_covers_network_policies() -> None:
    sync = _load(GATEKEEPER / "sync-config.yaml")["spec"]["sync"]["syncOnly"]
    assert {"group": "networking.k8s.io", "version": "v1", "kind": "NetworkPolicy"} in sync
    assert _constraint("network-policy")["spec"]["enforcementAction"] == "dryrun"


@pytest.fixture(scope="module")
def rego(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A function evaluating a template's ``violation`` set with regorus; skips if opa-eval is absent."""
    opa_eval = pytest.importorskip(
        "opa_eval", reason="opa-eval (regorus) not installed: Python predicates only"
    )
    workdir = tmp_path_factory.mktemp("rego")

    def evaluate(
        name: str,
        obj: dict[str, Any],
        inventory: dict[str, Any] | None = None,
        constraint: dict[str, Any] | None = None,
    ) -> list[str]:
        template, constraint = _template(name), constraint or _constraint(name)
        package = template["metadata"]["name"]
        path = workdir / f"{package}.rego"
        path.write_text(template["spec"]["targets"][0]["rego"])
        data = json.dumps({"inventory": inventory or {"namespace": {}}})
        engine = opa_eval.OpaEval(str(path), data_json=data, query=f"data.{package}.violation")
        review = {"review": {"object": obj, "kind": {"kind": obj["kind"]}},
                  "parameters": constraint["spec"].get("parameters", {})}  # fmt: skip
        result = engine.evaluate_parsed(json.dumps(review))
        return [v["msg"] for v in result or []]

    yield evaluate


def test_rego_backup_label_matches_intent(rego: Any) -> None:
    for namespace, expected in NAMESPACES:
        msgs = rego("backup-policy-label", namespace)
        assert bool(msgs) is expected, (namespace["metadata"]["name"], msgs)
        if msgs:
            assert namespace["metadata"]["name"] in msgs[0] and "dr.dev/backup-policy" in msgs[0]


def test_rego_run_as_non_root_matches_intent(rego: Any) -> None:
    for case, (pod_ctx, *conts), _ in POD_CASES:
        for kind in WORKLOAD_KINDS:
            obj = pod(kind, pod_ctx, *conts)
            msgs = rego("run-as-non-root", obj)
            assert len(msgs) == len(root_violations(obj)), (case, kind, msgs)
            for bad in root_violations(obj):
                assert any(f"container {bad}" in m for m in msgs), (case, kind, msgs)


def test_rego_network_policy_uses_inventory(rego: Any) -> None:
    with_policy = {"namespace": {"shop": {"networking.k8s.io/v1": {"NetworkPolicy": {"default-deny": {}}}}}}
    assert rego("network-policy", ns("shop"), with_policy) == []
    assert rego("network-policy", ns("shop")) != []
    assert rego("network-policy", ns("kube-system")) == []
    assert rego("network-policy", ns("dr-system")) == []
    assert rego("network-policy", ns("drill-1", **{"dr.dev/drill": "true"})) == []


# --------------------------------------------------------------------------- policy_check (dr status)


def _config(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "dr.yaml"
    path.write_text("apiVersion: dr.dev/v1\nkind: Config\n" + text)
    return load_config_file(path)


def test_covered_by_policy_globs(tmp_path: Path) -> None:
    cfg = _config(
        tmp_path,
        "backupPolicies:\n"
        "  - {name: shop, schedule: '0 1 * * *', scope: {namespaces: [shop, 'shop-*']}}\n"
        "  - {name: ops, schedule: '0 2 * * *', scope: {namespaces: ['ops-?']}}\n",
    )
    assert covered_by_policy("shop", cfg) == "shop"
    assert covered_by_policy("shop-eu", cfg) == "shop"
    assert covered_by_policy("ops-1", cfg) == "ops"
    assert covered_by_policy("ops-12", cfg) is None
    assert covered_by_policy("shopping", cfg) is None
    everything = _config(tmp_path, "backupPolicies:\n  - {name: all, schedule: '0 1 * * *'}\n")
    assert covered_by_policy("anything", everything) == "all"


def test_namespaces_without_backup_policy_on_the_cluster(
    k8s: TestCluster, tmp_path: Path, unique: str
) -> None:
    from kubernetes import client

    api = api_as(k8s)
    core = client.CoreV1Api(api)
    made = {
        f"shop-{unique}": {},
        f"labelled-{unique}": {"dr.dev/backup-policy": "none"},
        f"orphan-{unique}": {},
        f"drill-{unique}": {"dr.dev/drill": "true"},
    }
    for name, labels in made.items():
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    try:
        cfg = _config(
            tmp_path,
            "backupPolicies:\n  - {name: shop, schedule: '0 1 * * *', scope: {namespaces: ['shop-*']}}\n",
        )
        missing = namespaces_without_backup_policy(api, cfg)
        mine = [n for n in missing if n.endswith(unique)]
        assert mine == [f"orphan-{unique}"]
        assert missing == sorted(missing)
        assert not [n for n in missing if n.startswith("kube-")]
    finally:
        for name in made:
            core.delete_namespace(name)
        api.close()


def test_namespaces_without_backup_policy_needs_list_rights(k8s: TestCluster, tmp_path: Path) -> None:
    from dr.errors import DrError

    if k8s.external:
        pytest.skip("identities are only known for the local test cluster")
    api = api_as(k8s, "bob")  # discovery only
    try:
        with pytest.raises(DrError, match="cannot list namespaces: 403"):
            namespaces_without_backup_policy(api, _config(tmp_path, ""))
    finally:
        api.close()


# --------------------------------------------------------------------------- dr's namespace, and the README


OTHER_NS = "backup-system"


def _rendered(engine: str, namespace: str) -> dict[str, dict[str, Any]]:
    return {name: yaml.safe_load(text) for name, text in policy_files(engine, namespace).items()}


def test_deploy_policies_are_the_render_for_dr_system() -> None:
    for engine in ("kyverno", "gatekeeper"):
        rendered = _rendered(engine, "dr-system")
        assert sorted(rendered) == sorted(f.name for f in (POLICIES / engine).glob("*.yaml"))
        for name, doc in rendered.items():
            assert _load(POLICIES / engine / name) == doc, name


def test_policies_exempt_the_configured_namespace_not_dr_system() -> None:
    # Both engines' rules named dr-system whatever namespace dr was configured to run in:
    # dr's own namespace needed a backup-policy label there, and dr-system was exempt instead.
    for engine in ("kyverno", "gatekeeper"):
        for name, text in policy_files(engine, OTHER_NS).items():
            assert "dr-system" not in text and "${" not in text, (engine, name)
    kyverno = _rendered("kyverno", OTHER_NS)
    for name in ("require-backup-policy-label.yaml", "generate-default-deny-network-policy.yaml"):
        rule = kyverno[name]["spec"]["rules"][0]
        assert _excluded_by_kyverno(rule, ns(OTHER_NS)), name
        assert not _excluded_by_kyverno(rule, ns("dr-system")), name
    gatekeeper = _rendered("gatekeeper", OTHER_NS)
    for name in ("backup-policy-label-constraint.yaml", "network-policy-constraint.yaml"):
        assert gatekeeper[name]["spec"]["parameters"]["exemptNamespaces"] == [OTHER_NS], name


def test_rego_exempts_the_configured_namespace(rego: Any) -> None:
    constraint = _rendered("gatekeeper", OTHER_NS)["backup-policy-label-constraint.yaml"]
    assert rego("backup-policy-label", ns(OTHER_NS), constraint=constraint) == []
    assert rego("backup-policy-label", ns("dr-system"), constraint=constraint) != []


def test_render_cli_prints_one_engines_policies_for_the_configs_namespace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "dr.yaml"
    cfg.write_text(f"apiVersion: dr.dev/v1\nkind: Config\nmover:\n  namespace: {OTHER_NS}\n")
    for engine, kinds in (
        ("kyverno", ["ClusterPolicy"] * 3),
        ("gatekeeper", ["ConstraintTemplate"] * 3 + ["K8sDr"] * 3 + ["Config"]),
    ):
        r = run_dr(capsys, "deploy", "render", "--config", str(cfg), "--policies", engine)
        assert r.code == 0, r.err
        docs = [d for d in yaml.safe_load_all(r.out) if d]
        # Gatekeeper: a constraint's kind exists only once its template does.
        assert [d["kind"][: len(k)] for d, k in zip(docs, kinds, strict=True)] == kinds
        assert docs == list(_rendered(engine, OTHER_NS).values())
        assert OTHER_NS in r.out and "dr-system" not in r.out
    r = run_dr(capsys, "deploy", "render", "--config", str(cfg), "--policies", "opa")
    assert r.code == 2 and "opa" in r.err and "Traceback" not in r.err


def _kyverno_exempt(rule: dict[str, Any]) -> set[str]:
    """Which of kube-*, dr's namespace and drill namespaces a Kyverno rule leaves out."""
    if rule["match"]["any"][0]["resources"]["kinds"] == ["Namespace"]:
        samples = {
            "kube-*": ns("kube-system"),
            "dr": ns("dr-system"),
            "drill": ns("d", **{"dr.dev/drill": "true"}),
        }
        return {k for k, sample in samples.items() if _excluded_by_kyverno(rule, sample)}
    out = set()
    for entry in rule.get("exclude", {}).get("any", []):
        res = entry["resources"]
        for pattern in res.get("namespaces", []):
            out |= {k for k, name in (("kube-*", "kube-system"), ("dr", "dr-system"))
                    if re.fullmatch(pattern.replace("*", ".*"), name)}  # fmt: skip
        if "dr.dev/drill" in json.dumps(res.get("namespaceSelector", {})):
            out.add("drill")
    return out


def _gatekeeper_exempt(name: str) -> set[str]:
    constraint, rego_text = _constraint(name), _template(name)["spec"]["targets"][0]["rego"]
    params, match = constraint["spec"].get("parameters", {}), constraint["spec"]["match"]
    out = set()
    if "kube-" in params.get("exemptPrefixes", []) or "kube-*" in match.get("excludedNamespaces", []):
        out.add("kube-*")
    if "dr-system" in params.get("exemptNamespaces", []) + match.get("excludedNamespaces", []):
        out.add("dr")
    if 'labels["dr.dev/drill"] == "true"' in rego_text or "dr.dev/drill" in json.dumps(match):
        out.add("drill")
    return out


def test_readme_exemptions_agree_with_both_engines_rules() -> None:
    # The README said dr's namespace was excluded everywhere; run-as-non-root exempted only kube-*.
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in (POLICIES / "README.md").read_text().splitlines()
        if line.startswith("| ") and not line.startswith("| rule")
    ]
    assert rows and all(len(row) == 4 for row in rows), "the README's table names each rule's exemptions"
    words = {"`kube-*`": "kube-*", "dr's namespace": "dr", "drill scratch namespaces": "drill"}
    documented = {row[0]: {v for k, v in words.items() if k in row[3]} for row in rows}
    files = {
        "backup policy": ("require-backup-policy-label.yaml", "backup-policy-label"),
        "as root": ("require-run-as-non-root.yaml", "run-as-non-root"),
        "NetworkPolicy": ("generate-default-deny-network-policy.yaml", "network-policy"),
    }
    assert len(documented) == len(files)
    for rule_text, exempt in documented.items():
        ((kyverno_file, gatekeeper_name),) = [f for key, f in files.items() if key in rule_text]
        assert _kyverno_exempt(_load(KYVERNO / kyverno_file)["spec"]["rules"][0]) == exempt, rule_text
        assert _gatekeeper_exempt(gatekeeper_name) == exempt, rule_text
    assert documented[next(r for r in documented if "as root" in r)] == {"kube-*"}


def _drs_workloads() -> list[dict[str, Any]]:
    """dr's CronJobs (deploy/) and a data-mover Job as the backup creates it in dr's namespace."""
    from datetime import timedelta

    from dr.kube.jobs import MoverJob, MoverPodConfig, mover_job

    mover = mover_job(
        MoverJob(name="dr-backup-x", namespace="dr-system", args=["mover"], claim="c", read_only=True,
                 run_id="b1", expires=0, service_account="dr", supplemental_groups=[1000]),
        MoverPodConfig(image="dr", resources=Resources(), deadline=timedelta(hours=1)),
    )  # fmt: skip
    workloads = [o for o in kustomize_build(DEPLOY) if pod_specs(o)] + [mover]
    assert {o["kind"] for o in workloads} == {"CronJob", "Job"}
    return workloads


def test_drs_own_pods_need_no_run_as_non_root_exemption() -> None:
    """dr's pods run as non-root: the rule need not (and does not) exempt dr's namespace."""
    rule = _load(KYVERNO / "require-run-as-non-root.yaml")["spec"]["rules"][0]
    for obj in _drs_workloads():
        name = obj["metadata"]["name"]
        assert root_violations(obj) == [], name
        as_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": _pod_spec(obj)}
        assert kyverno_root_violations(rule, as_pod) == [], name


def test_rego_drs_own_pods_pass_run_as_non_root(rego: Any) -> None:
    for obj in _drs_workloads():
        assert rego("run-as-non-root", obj) == [], obj["metadata"]["name"]
