"""Helpers for the deployment tests: clients per identity, server-side apply, a small kustomize."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dr.kube.client import KubeClient
from dr.kube.wait import wait_for_crd_established, wait_for_served
from tests.kube_helpers import CRD_RES, create
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


# --------------------------------------------------------------------------- the API of the Kubernetes version


@dataclass(frozen=True)
class BuiltinType:
    """A resource type of the Kubernetes API the installed kubernetes client was generated from."""

    group: str
    plural: str
    kind: str
    namespaced: bool
    versions: tuple[str, ...]


_GET = re.compile(r"call_api\(\s*'(?P<path>/apis?/[^']+)',\s*'GET'")
_KIND = re.compile(r"(?:objects of kind|read the specified) (?P<kind>\w+)")
_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"/(?P<namespaced>namespaces/\{namespace\}/)?(?P<plural>[a-z0-9]+)(?P<object>/\{name\})?$"
)


def kubernetes_api_types() -> list[BuiltinType]:
    """Every type the kubernetes client can both list and get, from its generated API modules.

    The client is generated from the OpenAPI of one Kubernetes version (36.x:
    1.36), all groups and versions (alpha and beta included), so this is what
    a cluster of that version may serve, without a cluster. Watch paths and
    subresources are left out; a type is the union over its versions.
    """
    import kubernetes.client.api

    found: dict[tuple[str, str], dict[str, Any]] = {}
    for module in sorted(Path(kubernetes.client.api.__file__).parent.glob("*_api.py")):
        for method in module.read_text().split("\n    def ")[1:]:
            call, kind = _GET.search(method), _KIND.search(method)
            m = _PATH.match(call["path"]) if call else None
            if m is None or kind is None:
                continue
            t = found.setdefault(
                (m["group"] or "", m["plural"]),
                {"kind": kind["kind"], "namespaced": False, "versions": set(), "verbs": set()},
            )
            t["versions"].add(m["version"] or m["core"])
            t["namespaced"] |= bool(m["namespaced"])
            t["verbs"].add("get" if m["object"] else "list")
    return [
        BuiltinType(group, plural, t["kind"], t["namespaced"], tuple(sorted(t["versions"])))
        for (group, plural), t in sorted(found.items())
        if t["verbs"] == {"get", "list"}
    ]


@contextmanager
def newer_builtin_types(kc: KubeClient) -> Iterator[list[BuiltinType]]:
    """The test cluster serving, as CRDs, the types of the built-in groups it lacks and dr backs up.

    A newer cluster serves e.g. flowcontrol.apiserver.k8s.io, resource.k8s.io
    and certificates.k8s.io built in; the test cluster serves none of them, so
    CRDs stand in for their types (a CRD cannot add a type to a group the
    test cluster does serve). Deleted again afterwards.
    """
    from dr.kube.managed import never_backed_up
    from tests.kube_helpers import delete_crd

    served_groups = {str(g["name"]) for g in kc.get("/apis")["groups"]} | {""}
    missing = [
        t
        for t in kubernetes_api_types()
        if t.group not in served_groups and never_backed_up(t.group, t.plural) is None
    ]
    names = _emulate_types(kc, missing)
    try:
        yield missing
    finally:
        for name in names:
            delete_crd(kc, name)


def _emulate_types(kc: KubeClient, types: list[BuiltinType]) -> list[str]:
    """CRDs serving ``types``; group names ending in ``k8s.io`` need the API-approval annotation."""
    names = []
    for t in types:
        name = f"{t.plural}.{t.group}"
        version = _ga_first(t.versions)
        create(kc, "customresourcedefinitions", {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": name,
                         "annotations": {"api-approved.kubernetes.io": "unapproved, test stand-in for a built-in type"}},
            "spec": {
                "group": t.group,
                "scope": "Namespaced" if t.namespaced else "Cluster",
                "names": {"plural": t.plural, "kind": t.kind, "singular": t.kind.lower(), "listKind": f"{t.kind}List"},
                "versions": [{"name": version, "served": True, "storage": True,
                              "schema": {"openAPIV3Schema": {"type": "object",
                                                             "x-kubernetes-preserve-unknown-fields": True}}}],
            },
        })  # fmt: skip
        names.append(name)
    for t, name in zip(types, names, strict=True):
        wait_for_crd_established(kc, CRD_RES, name, timeout=30)
        wait_for_served(kc, t.group, _ga_first(t.versions), t.plural, timeout=30)
    return names


def _ga_first(versions: tuple[str, ...]) -> str:
    return min(versions, key=lambda v: ("alpha" in v, "beta" in v, v))
