"""Helpers for the deployment tests: clients per identity, server-side apply, a small kustomize."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.servers import TestCluster

PROJECT = Path(__file__).resolve().parent.parent
DEPLOY = PROJECT / "deploy"
FIELD_MANAGER = "dr-tests"


def api_as(cluster: TestCluster, user: str | None = None) -> Any:
    """An ApiClient for ``user`` (its own token), or admin; impersonation on an external cluster."""
    from kubernetes import config as kconfig

    if user is None:
        return kconfig.new_client_from_config(config_file=cluster.kubeconfig)
    if not cluster.external:
        return kconfig.new_client_from_config(config_file=cluster.kubeconfig_for(user))
    api = kconfig.new_client_from_config(config_file=cluster.kubeconfig)
    api.set_default_header("Impersonate-User", user)
    if user.startswith("system:serviceaccount:"):
        ns = user.split(":")[2]
        # Two headers of the same name are needed; urllib3 joins a list with commas.
        api.set_default_header("Impersonate-Group", "system:serviceaccounts")
        api.set_default_header("Impersonate-Group", f"system:serviceaccounts:{ns}")
    return api


def served(api: Any, obj: dict[str, Any]) -> bool:
    """Whether the server serves this object's kind (the test cluster lacks e.g. ValidatingAdmissionPolicy)."""
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    try:
        DynamicClient(api).resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    except ResourceNotFoundError:
        return False
    return True


def server_side_apply(api: Any, obj: dict[str, Any], *, dry_run: bool = False) -> Any:
    """``kubectl apply --server-side [--dry-run=server]`` of one object."""
    from kubernetes.dynamic import DynamicClient

    dyn = DynamicClient(api)
    resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    kwargs: dict[str, Any] = {"field_manager": FIELD_MANAGER, "force_conflicts": True}
    if dry_run:
        kwargs["dry_run"] = "All"
    return resource.server_side_apply(
        body=obj,
        name=obj["metadata"]["name"],
        namespace=obj["metadata"].get("namespace"),
        **kwargs,
    )


def load_stream(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


# --------------------------------------------------------------------------- kustomize (the subset deploy/ uses)


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    """``kustomize build`` for what deploy/ uses: resources, labels, configMapGenerator.

    kustomize is not a Python package; this covers exactly the fields our
    kustomization has and fails loudly on any other, and the test compares
    it with ``kubectl kustomize`` where kubectl exists.
    """
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "labels", "resources", "configMapGenerator"}
    unknown = set(k) - known
    assert not unknown, f"kustomize subset does not handle {sorted(unknown)}"
    objects: list[dict[str, Any]] = []
    for res in k.get("resources", []):
        objects += load_stream((directory / res).read_text())
    for gen in k.get("configMapGenerator", []):
        assert gen.get("options", {}).get("disableNameSuffixHash") is True, "hash suffixes not supported"
        data: dict[str, str] = {}
        for spec in gen["files"]:
            key, _, path = spec.partition("=") if "=" in spec else (Path(spec).name, "", spec)
            data[key] = (directory / path).read_text()
        meta: dict[str, Any] = {"name": gen["name"]}
        if gen.get("namespace"):
            meta["namespace"] = gen["namespace"]
        if gen["options"].get("labels"):
            meta["labels"] = dict(gen["options"]["labels"])
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data})
    for obj in objects:
        for entry in k.get("labels", []):
            assert not entry.get("includeSelectors") and not entry.get("includeTemplates")
            obj["metadata"].setdefault("labels", {}).update(entry["pairs"])
    return objects


def kubectl_kustomize(directory: Path) -> list[dict[str, Any]] | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    res = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return load_stream(res.stdout)


def identity(obj: dict[str, Any]) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


# --------------------------------------------------------------------------- pod security


def pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod specs inside a Pod, a workload template or a CronJob."""
    kind, spec = obj["kind"], obj.get("spec", {})
    if kind == "Pod":
        return [spec]
    if kind == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    if "template" in spec:
        return [spec["template"]["spec"]]
    return []


def restricted_problems(pod: dict[str, Any]) -> list[str]:
    """What Pod Security ``restricted`` (and our own rules) would reject in this pod spec."""
    problems: list[str] = []
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        problems.append("pod: runAsNonRoot is not true")
    if psc.get("runAsUser") != 65532 or psc.get("fsGroup") != 65532:
        problems.append("pod: runAsUser/fsGroup are not 65532")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("pod: seccompProfile is not RuntimeDefault")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            problems.append(f"pod: {key}")
    for vol in pod.get("volumes", []):
        if "hostPath" in vol:
            problems.append(f"volume {vol['name']}: hostPath")
    if not any(v.get("name") == "tmp" and "emptyDir" in v for v in pod.get("volumes", [])):
        problems.append("pod: no emptyDir for /tmp")
    for c in pod.get("initContainers", []) + pod.get("containers", []):
        sc = c.get("securityContext", {})
        name = c.get("name", "?")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
            problems.append(f"{name}: capabilities are not drop [ALL]")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: root file system is writable")
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("runAsUser") == 0:
            problems.append(f"{name}: runs as root")
        res = c.get("resources", {})
        if not res.get("requests") or not res.get("limits", {}).get("memory"):
            problems.append(f"{name}: no resource requests / memory limit")
        if "/tmp" not in {m["mountPath"] for m in c.get("volumeMounts", [])}:
            problems.append(f"{name}: /tmp is not mounted")
        for env in c.get("env", []):
            if "value" in env and any(
                w in env["name"].upper() for w in ("SECRET", "TOKEN", "PASSWORD", "KEY")
            ):
                problems.append(f"{name}: credential {env['name']} given inline")
    return problems
