"""The kustomize base in ``deploy/``, written from the same builders as ``dr deploy render``.

``deploy/`` is the render of ``deploy/dr.yaml`` split into files a person can
read, with the two ConfigMaps left to kustomize's ``configMapGenerator`` (so
the config and the runbook exist once, as plain files), plus the Kyverno and
Gatekeeper policies in ``deploy/policies/`` for the same namespace
(``dr.deploy.policies``). A test checks that the files on disk are exactly
what this module writes; after changing a builder, regenerate them with::

    python -m dr.deploy.base deploy
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dr.config import load_config_file
from dr.deploy.policies import ENGINES, policy_files
from dr.deploy.render import read_source, render, to_yaml_stream
from dr.kube.pod_template import Manifest


@dataclass(frozen=True)
class BaseFile:
    name: str
    header: str
    holds: Callable[[Manifest], bool]


def _kind(*kinds: str) -> Callable[[Manifest], bool]:
    return lambda o: o["kind"] in kinds


def _named(kinds: tuple[str, ...], *names: str) -> Callable[[Manifest], bool]:
    return lambda o: o["kind"] in kinds and o["metadata"]["name"] in names


def _policy(name: str) -> Callable[[Manifest], bool]:
    """A ValidatingAdmissionPolicy and its binding, named ``NAME.NAMESPACE``."""
    kinds = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
    return lambda o: o["kind"] in kinds and o["metadata"]["name"].split(".", 1)[0] == name


_RBAC_KINDS = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")

FILES = [
    BaseFile(
        "namespace.yaml",
        "dr's namespace. Pod Security `restricted` is enforced, audited and warned about:\n"
        "every dr pod runs as uid 65532, read-only root, no capabilities, RuntimeDefault seccomp.",
        _kind("Namespace"),
    ),
    BaseFile(
        "serviceaccounts.yaml",
        "One service account per kind of job (least privilege):\n"
        "  dr          scheduled backups (read-only on what it backs up)\n"
        "  dr-restore  restores run in the cluster (writes; Secrets by name, never listed)\n"
        "  dr-drill    monthly drills and gc (scratch namespaces only)",
        _kind("ServiceAccount"),
    ),
    BaseFile(
        "rbac-backup.yaml",
        "Backup: get/list/watch on each backed-up resource by API group (no wildcards, no\n"
        "writes on Secrets), pods/exec + pods/log for hooks, VolumeSnapshots next to the PVCs.\n"
        "Custom resources: add a ClusterRole with get/list/watch on their group and bind it\n"
        "to the service account dr as well.\n"
        "dr-mover-in-namespace is opt-in: bind it with a RoleBinding in an app namespace whose\n"
        "volumes are copied at file level (the mover Job must run next to the PVC); `dr deploy\n"
        "render` emits those bindings for the namespaces a policy names literally.\n"
        "Residual risk: pods/exec is cluster-wide (hooks may run in any backed-up namespace);\n"
        "narrow it with per-namespace RoleBindings if your policies name their namespaces.",
        _named(_RBAC_KINDS, "dr-backup", "dr-mover-in-namespace"),
    ),
    BaseFile(
        "rbac-workspace.yaml",
        "dr's own temporary objects (data-mover Jobs, PVCs, VolumeSnapshots) live in dr-system;\n"
        "backup creates them (admission-mover-guard.yaml limits the service account its Jobs\n"
        "run as), gc (dr-drill, in rbac-drill.yaml) only lists and deletes what a crashed run\n"
        "left behind.",
        _named(_RBAC_KINDS, "dr-workspace"),
    ),
    BaseFile(
        "rbac-restore.yaml",
        "Restore: create/update/patch/delete on the restorable types, create namespaces;\n"
        "cluster-scoped ones (ClusterRoles/-Bindings included) created or updated, never deleted.\n"
        "Secrets: get/create/update/patch/delete by name, never list/watch. It has no bind/escalate:\n"
        "RBAC objects granting more than it holds fail (restore those with an admin identity).",
        _named(_RBAC_KINDS, "dr-restore"),
    ),
    BaseFile(
        "rbac-drill.yaml",
        "Drill: create scratch namespaces, bind dr-drill-workspace (restore rights) inside them,\n"
        "delete them afterwards (and expired ones in gc). In dr-system it may only read\n"
        "dr-config and the credentials Secret and list/delete leftovers (dr-drill-cleanup): it\n"
        "creates no Jobs there, which could run as any of dr's accounts.\n"
        "RBAC cannot limit namespace deletion or binding to labelled namespaces: see\n"
        "admission-drill-guard.yaml for the policy that does.",
        _named(_RBAC_KINDS, "dr-drill", "dr-drill-workspace", "dr-drill-cleanup"),
    ),
    BaseFile(
        "admission-drill-guard.yaml",
        "ValidatingAdmissionPolicy (GA since Kubernetes 1.30): the dr-drill account may update\n"
        "or delete only namespaces already labelled dr.dev/drill=true, must label the ones it\n"
        "creates, and may create RoleBindings only inside them. Without it (clusters older than\n"
        "1.30, or where admission policies are not enforced — the test cluster stores but does\n"
        "not enforce them) the drill account can delete ANY namespace: do not deploy the drill\n"
        "CronJob there, or run drills in a separate cluster.",
        _policy("dr-drill-scratch-namespaces-only"),
    ),
    BaseFile(
        "admission-mover-guard.yaml",
        "ValidatingAdmissionPolicy: Jobs and Pods the backup account (dr) creates in dr-system\n"
        "must run as the mover account dr. RBAC cannot restrict a Job's serviceAccountName, so\n"
        "without it (see admission-drill-guard.yaml for where policies are not enforced) the\n"
        "backup account can start a Job running as dr-restore (cluster-wide writes).",
        _policy("dr-mover-service-accounts-only"),
    ),
    BaseFile(
        "networkpolicies.yaml",
        "Deny all ingress and egress in dr-system, then let dr pods reach only DNS (kube-dns),\n"
        "the API server and the object store / Vault / KMS (TCP 443, 6443 for the API server,\n"
        "8200 for Vault). Drill checks go through the API server: no egress to scratch namespaces.\n"
        "PLACEHOLDER: 0.0.0.0/0 — NetworkPolicy cannot name hosts. Narrow the ipBlock to your\n"
        "API server endpoints, object store and Vault/KMS ranges, and change the ports to\n"
        "yours (`dr deploy render` derives them from the URLs in your dr.yaml).",
        _kind("NetworkPolicy"),
    ),
    BaseFile(
        "cronjobs.yaml",
        "Scheduled runs: the backup policy, the monthly drill and the daily gc of scratch\n"
        "namespaces. concurrencyPolicy Forbid (no overlapping runs), startingDeadlineSeconds\n"
        "(skip a run missed by far rather than start it late), activeDeadlineSeconds (the\n"
        "mover deadline), backoffLimit and a podFailurePolicy that does not retry exit codes\n"
        "2/3/4 (invalid config, partial failure, failed verification: answers, not flukes)\n"
        "and replaces a pod a disruption stopped (DisruptionTarget: drain, eviction) uncounted.",
        _kind("CronJob"),
    ),
]

KUSTOMIZATION = """\
# Kustomize base for running dr in a cluster: `kubectl apply -k deploy/`.
#
# Everything here is rendered from deploy/dr.yaml by the same code as
# `dr deploy render` (regenerate with `python -m dr.deploy.base deploy`).
# For your own cluster, prefer `dr deploy render --config your-dr.yaml`, which
# also derives CronJobs, runbook ConfigMaps and egress ports from your config;
# or use this base from an overlay that replaces dr.yaml and the runbook.
#
# Not included on purpose: secrets.example.yaml (documentation: create the real
# Secrets yourself, e.g. from a secret manager) and policies/ (Kyverno or
# Gatekeeper rules for the application namespaces; install one of them).
#
# Every object names its namespace itself: no `namespace:` transformer here,
# because kustomize treats kinds it has no schema for (ValidatingAdmissionPolicy
# in kustomize 5.5) as namespaced and would stamp a namespace on them.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
labels:
  - pairs:
      app.kubernetes.io/managed-by: kustomize
resources:
{resources}
configMapGenerator:
  - name: dr-config
    namespace: dr-system
    files:
      - dr.yaml
    options:
      disableNameSuffixHash: true
      labels:
        app.kubernetes.io/name: dr
        app.kubernetes.io/component: config
        app.kubernetes.io/part-of: dr
  - name: dr-runbook-site-monthly
    namespace: dr-system
    files:
      - runbook.yaml=runbooks/site.yaml
    options:
      disableNameSuffixHash: true
      labels:
        app.kubernetes.io/name: dr
        app.kubernetes.io/component: drill
        app.kubernetes.io/part-of: dr
"""

GENERATED = (
    "Generated by `python -m dr.deploy.base deploy` from deploy/dr.yaml: edit the builders, not this file."
)


def base_files(deploy_dir: Path) -> dict[str, str]:
    """File name -> text for every generated file of the base in ``deploy_dir``."""
    config_path = deploy_dir / "dr.yaml"
    source = read_source(load_config_file(config_path), config_path)
    objects = [o for o in render(source) if o["kind"] != "ConfigMap"]
    out: dict[str, str] = {}
    placed: set[int] = set()
    for f in FILES:
        mine = [o for o in objects if f.holds(o)]
        placed.update(id(o) for o in mine)
        comment = "".join(f"# {line}".rstrip() + "\n" for line in f.header.splitlines())
        stream = to_yaml_stream(mine, "deploy/dr.yaml").split("\n", 1)[1]  # drop render's own header
        out[f.name] = f"{comment}# {GENERATED}\n{stream}"
    missing = [o["kind"] + "/" + o["metadata"]["name"] for o in objects if id(o) not in placed]
    if missing:
        raise RuntimeError(f"objects without a file in deploy/: {', '.join(missing)}")
    resources = "".join(f"  - {f.name}\n" for f in FILES).rstrip("\n")
    out["kustomization.yaml"] = KUSTOMIZATION.format(resources=resources)
    # Not in the kustomization (they need Kyverno or Gatekeeper): rendered for the same namespace.
    ns = source.config.mover.namespace
    for engine in ENGINES:
        for name, text in policy_files(engine, ns).items():
            origin = f"dr/deploy/policy_templates/{engine}/{name}"
            generated = f"# Generated by `python -m dr.deploy.base deploy` from {origin} for {ns}: edit that, not this file.\n"
            out[f"policies/{engine}/{name}"] = generated + text
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m dr.deploy.base DEPLOY_DIR", file=sys.stderr)
        return 2
    deploy_dir = Path(argv[0])
    for name, text in base_files(deploy_dir).items():
        (deploy_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (deploy_dir / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
