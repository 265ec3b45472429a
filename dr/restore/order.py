"""The order in which restore creates resource types: one stage after another.

Each stage is created completely (all its objects, in parallel) before the
next starts, so that what an object refers to exists by the time the object
arrives — and admission (quotas, webhooks, the RBAC escalation check) sees the
same world it saw when the object was first created:

1. CustomResourceDefinitions — restore then waits until each is Established
   and served, so the custom objects of later stages can be created;
2. Namespaces (plus any missing target namespace, created bare);
3. StorageClasses, then PersistentVolumes, then PersistentVolumeClaims —
   claims bind to the volumes and classes that exist;
4. ServiceAccounts, then RBAC: ClusterRoles, ClusterRoleBindings, Roles,
   RoleBindings (a binding can only grant a role that exists);
5. Secrets, ConfigMaps (mounted by pods), LimitRanges and ResourceQuotas
   (admission of the workloads sees them), Services (environment variables of
   pods, endpoints for readiness);
6. everything not listed here (custom resources, Ingresses, NetworkPolicies,
   PriorityClasses, IngressClasses, …);
7. workloads: Pods, ReplicaSets/ReplicationControllers, Deployments,
   StatefulSets, DaemonSets, Jobs, CronJobs; then what targets them:
   HorizontalPodAutoscalers and PodDisruptionBudgets;
8. admission webhooks and policies last, so a restored webhook cannot
   intercept (and, with its service not yet running, fail) the restore itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    types: frozenset[tuple[str, str]]  # (group, plural); empty for the catch-all stage


OTHER = "other resources"

STAGES: tuple[Stage, ...] = tuple(
    Stage(name, frozenset(types))
    for name, types in (
        ("customresourcedefinitions", [("apiextensions.k8s.io", "customresourcedefinitions")]),
        ("namespaces", [("", "namespaces")]),
        ("storageclasses", [("storage.k8s.io", "storageclasses")]),
        ("persistentvolumes", [("", "persistentvolumes")]),
        ("persistentvolumeclaims", [("", "persistentvolumeclaims")]),
        ("serviceaccounts", [("", "serviceaccounts")]),
        ("clusterroles", [("rbac.authorization.k8s.io", "clusterroles")]),
        ("clusterrolebindings", [("rbac.authorization.k8s.io", "clusterrolebindings")]),
        ("roles", [("rbac.authorization.k8s.io", "roles")]),
        ("rolebindings", [("rbac.authorization.k8s.io", "rolebindings")]),
        ("secrets", [("", "secrets")]),
        ("configmaps", [("", "configmaps")]),
        ("limitranges and resourcequotas", [("", "limitranges"), ("", "resourcequotas")]),
        ("services", [("", "services")]),
        (OTHER, []),
        ("pods", [("", "pods")]),
        ("replicasets", [("apps", "replicasets"), ("", "replicationcontrollers")]),
        ("deployments", [("apps", "deployments")]),
        ("statefulsets", [("apps", "statefulsets")]),
        ("daemonsets", [("apps", "daemonsets")]),
        ("jobs", [("batch", "jobs")]),
        ("cronjobs", [("batch", "cronjobs")]),
        (
            "autoscalers and disruption budgets",
            [("autoscaling", "horizontalpodautoscalers"), ("policy", "poddisruptionbudgets")],
        ),
        (
            "admission webhooks and policies",
            [
                ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
                ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
                ("admissionregistration.k8s.io", "validatingadmissionpolicies"),
                ("admissionregistration.k8s.io", "validatingadmissionpolicybindings"),
                ("admissionregistration.k8s.io", "mutatingadmissionpolicies"),
                ("admissionregistration.k8s.io", "mutatingadmissionpolicybindings"),
            ],
        ),
    )
)

_INDEX: dict[tuple[str, str], int] = {t: i for i, s in enumerate(STAGES) for t in s.types}
OTHER_INDEX = next(i for i, s in enumerate(STAGES) if s.name == OTHER)
CRD_STAGE = 0
NAMESPACE_STAGE = 1


def stage_of(group: str, plural: str) -> int:
    """Index in ``STAGES`` of the stage that restores this resource type."""
    return _INDEX.get((group, plural), OTHER_INDEX)
