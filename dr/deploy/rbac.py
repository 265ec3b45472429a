"""Who dr runs as in the cluster: service accounts, their roles and bindings (least privilege).

One service account per kind of job, so that a compromised backup pod cannot
write and a compromised drill pod cannot touch production namespaces:

``dr`` (backup)
    Reads what it backs up — each resource named by API group, only
    ``get/list/watch`` (never ``*``, never a write on Secrets) — plus
    ``pods/exec`` and ``pods/log`` for hooks and ``create/delete`` of
    VolumeSnapshots (they must live next to the PVC they snapshot). Its own
    temporary Jobs/PVCs/VolumeSnapshots live in the dr namespace only (Role
    ``dr-workspace``); RBAC cannot limit the service account such a Job runs
    as, so the ValidatingAdmissionPolicy from :func:`mover_guard_policy`
    admits only the mover account there (residual risk where admission
    policies are not enforced: the backup account can start a Job in dr's
    namespace running as ``dr-restore``). The name ``dr`` matches the identity the test cluster
    ships with a token.
``dr-restore``
    Creates, updates, patches and deletes the restorable types and creates
    namespaces. Secrets: ``get/create/update/patch/delete`` but no
    ``list``/``watch`` — it cannot enumerate Secrets, it can only touch the
    ones it names. (``get`` is needed to compare an existing Secret and to
    resume a restore; withholding it protected nothing, as every ``patch``
    response carries the whole object.) RBAC objects, ClusterRoles and
    ClusterRoleBindings included (``get/list/watch/create/update/patch``, no
    ``delete``), are restored only where the restore account already holds what
    they grant (the API server's escalation check); it has no
    ``bind``/``escalate``, so it cannot grant itself or anyone more than it has.
    Residual risk, accepted for disaster recovery (a new cluster needs the
    app's ClusterRoles back): a compromised restore pod can hand its *own*
    rights to other subjects — as it already could per namespace with
    RoleBindings.
``dr-drill``
    Creates namespaces, deletes them, and binds the ClusterRole
    ``dr-drill-workspace`` (restore rights, plus ``services/proxy`` for the
    ``http`` steps) *inside* the scratch namespaces it created — it holds no
    write rights anywhere else, except deleting the leftovers of crashed runs
    in dr's namespace (Role ``dr-drill-cleanup``: get/list/delete, never
    create — a Job it created there could run as any of dr's accounts) and
    deleting VolumeSnapshotContents (``dr drill gc`` removes the clones a crashed
    backup left; residual risk: it could delete any content, and one with
    policy ``Delete`` takes its storage snapshot along). It may not patch them:
    with patch as well it could switch any kept (``Retain``) content to
    ``Delete`` and destroy its storage snapshot; a crashed backup's snapshot
    whose content must be switched first is left to the backup account's sweep
    of leftovers (which has patch). RBAC cannot limit
    deletion or binding to labelled namespaces; the ValidatingAdmissionPolicy
    from :func:`drill_guard_policy` closes that gap (residual risk where
    admission policies are not enforced: the drill account can delete any
    namespace — keep it bound only where the policy is enforced).

Every role also creates Events (``dr.observe.events``).

These builders are the single source of the RBAC: ``dr deploy render``
prints them and ``deploy/`` holds the same objects (a test keeps both equal).
"""

from __future__ import annotations

from typing import Any

from dr.kube.pod_template import Manifest, labels

BACKUP_SA = "dr"
RESTORE_SA = "dr-restore"
DRILL_SA = "dr-drill"
# Scheduled retention (`dr forget`, `dr prune`): talks only to the repository, so it has
# no rights in the cluster; its own account so that the object store (IRSA, Workload
# Identity) and Vault can give deletes to it alone, not to the backup account.
MAINTENANCE_SA = "dr-maintenance"

BACKUP_ROLE = "dr-backup"
RESTORE_ROLE = "dr-restore"
DRILL_ROLE = "dr-drill"
DRILL_WORKSPACE_ROLE = "dr-drill-workspace"
WORKSPACE_ROLE = "dr-workspace"
MOVER_IN_NAMESPACE_ROLE = "dr-mover-in-namespace"
DRILL_CLEANUP_ROLE = "dr-drill-cleanup"
DRILL_GUARD_POLICY = "dr-drill-scratch-namespaces-only"
MOVER_GUARD_POLICY = "dr-mover-service-accounts-only"
# The service accounts the backup's mover Jobs in dr's namespace run as
# (``dr.backup.volumes.VolumeBackupContext.service_account``).
MOVER_SERVICE_ACCOUNTS = (BACKUP_SA,)

DRILL_LABEL = "dr.dev/drill"
BACKUP_POLICY_LABEL = "dr.dev/backup-policy"

READ = ["get", "list", "watch"]
WRITE = ["get", "list", "watch", "create", "update", "patch", "delete"]
TEMPORARY = ["get", "list", "watch", "create", "delete"]
# Restore reads and writes the Secrets it names, but never lists them: a 409 on
# create is followed by a get to compare (and to find its own earlier restore);
# a patch response returns the object anyway, so get adds no reading power.
SECRET_WRITE = ["get", "create", "update", "patch", "delete"]
EVENTS = ["create", "patch"]
# The verbs the API server checks for the HTTP methods an ``http`` drill step
# may use (``HttpStep.method``), on ``services/proxy``: nothing more, so a
# drill cannot e.g. DELETE through the proxy.
PROXY_VERB_OF_METHOD = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update"}
PROXY_VERBS = sorted(set(PROXY_VERB_OF_METHOD.values()))

# What dr backs up and restores, by API group. Custom resources need an extra
# ClusterRole bound to the same account (see deploy/README section in the docs).
NAMESPACED_TYPES: dict[str, list[str]] = {
    "": [
        "configmaps",
        "services",
        "serviceaccounts",
        "persistentvolumeclaims",
        "limitranges",
        "resourcequotas",
        "replicationcontrollers",
    ],
    "apps": ["deployments", "statefulsets", "daemonsets", "replicasets"],
    "batch": ["jobs", "cronjobs"],
    "networking.k8s.io": ["ingresses", "networkpolicies"],
    "policy": ["poddisruptionbudgets"],
    "autoscaling": ["horizontalpodautoscalers"],
    "rbac.authorization.k8s.io": ["roles", "rolebindings"],
}
CLUSTER_TYPES: dict[str, list[str]] = {
    "": ["namespaces", "persistentvolumes"],
    "storage.k8s.io": ["storageclasses"],
    "scheduling.k8s.io": ["priorityclasses"],
    "networking.k8s.io": ["ingressclasses"],
    "apiextensions.k8s.io": ["customresourcedefinitions"],
    "rbac.authorization.k8s.io": ["clusterroles", "clusterrolebindings"],
    "snapshot.storage.k8s.io": ["volumesnapshotclasses"],
}
# Read by the backup only: it lists every type the cluster serves in the scope,
# and these hold objects worth keeping (Endpoints and EndpointSlices of
# Services without a selector; stand-alone PodTemplates and ControllerRevisions)
# next to ones it leaves out (those maintained by controllers). Restoring the
# kept ones needs write rights the restore role does not grant by default.
#
# The rest are types the backup lists because the cluster serves them (a 403 on
# any listing makes the whole backup PartiallyFailed): every built-in type a
# Kubernetes 1.31-1.36 cluster may serve (GA, or beta/alpha when enabled) that
# dr.kube.managed does not leave out. Most are cluster-scoped and listed with
# includeClusterResources (admission webhooks and policies, API priority and
# fairness, DRA device classes and slices, CSIDrivers, RuntimeClasses, service
# CIDRs); CSIStorageCapacities, DRA claims, lease candidates, pod groups and
# pod certificate requests are namespaced. Read-only here on purpose: restoring
# a webhook or an admission policy, a flow schema or a CSIDriver changes how the
# whole cluster admits requests, queues them or mounts volumes, so that is left
# to an admin identity. tests/test_deploy_rbac.py derives the list of types from
# the kubernetes client (generated from the API of the Kubernetes version it is
# for): a type a newer client knows fails that test instead of a backup.
BACKUP_ONLY_READS: dict[str, list[str]] = {
    "": ["endpoints", "podtemplates"],
    "apps": ["controllerrevisions"],
    "discovery.k8s.io": ["endpointslices"],
    "storage.k8s.io": ["csistoragecapacities", "csidrivers", "volumeattributesclasses"],
    "resource.k8s.io": [
        "resourceclaims",
        "resourceclaimtemplates",
        "deviceclasses",
        "resourceslices",
        "devicetaintrules",
        "resourcepoolstatusrequests",
        # Served by 1.31 only (v1alpha3, with DRA enabled); gone since 1.32.
        "podschedulingcontexts",
    ],
    "admissionregistration.k8s.io": [
        "mutatingwebhookconfigurations",
        "validatingwebhookconfigurations",
        "validatingadmissionpolicies",
        "validatingadmissionpolicybindings",
        "mutatingadmissionpolicies",
        "mutatingadmissionpolicybindings",
    ],
    "node.k8s.io": ["runtimeclasses"],
    "networking.k8s.io": ["servicecidrs"],
    "flowcontrol.apiserver.k8s.io": ["flowschemas", "prioritylevelconfigurations"],
    "certificates.k8s.io": ["certificatesigningrequests", "clustertrustbundles", "podcertificaterequests"],
    "coordination.k8s.io": ["leasecandidates"],
    "scheduling.k8s.io": ["podgroups", "workloads"],
    "internal.apiserver.k8s.io": ["storageversions"],
    "storagemigration.k8s.io": ["storageversionmigrations"],
}
SNAPSHOT_GROUP = "snapshot.storage.k8s.io"


def _rule(
    groups: list[str], resources: list[str], verbs: list[str], names: list[str] | None = None
) -> Manifest:
    rule: Manifest = {"apiGroups": groups, "resources": resources, "verbs": verbs}
    if names:
        rule["resourceNames"] = names
    return rule


def _merged(*tables: dict[str, list[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for table in tables:
        for group, resources in table.items():
            out.setdefault(group, [])
            out[group] += [r for r in resources if r not in out[group]]
    return out


def _meta(name: str, component: str, namespace: str | None = None) -> Manifest:
    meta: Manifest = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = labels(component)
    return meta


# --------------------------------------------------------------------------- rules


def backup_rules() -> list[Manifest]:
    reads = _merged(NAMESPACED_TYPES, CLUSTER_TYPES, BACKUP_ONLY_READS, {"": ["secrets", "pods"]})
    rules = [_rule([g], sorted(r), READ) for g, r in reads.items()]
    rules += [
        # Hooks: run a command in the app's pods, read their output.
        _rule([""], ["pods/exec"], ["create"]),
        _rule([""], ["pods/log"], ["get"]),
        # CSI snapshots are taken in the PVC's namespace; contents are cloned
        # into the dr namespace for the data mover to read.
        _rule([SNAPSHOT_GROUP], ["volumesnapshots", "volumesnapshotcontents"], TEMPORARY),
        # dr's snapshots are temporary: a content its class made Retain is switched to
        # Delete before the snapshot is deleted (else the storage snapshot leaks).
        _rule([SNAPSHOT_GROUP], ["volumesnapshotcontents"], ["patch"]),
        _rule([""], ["events"], EVENTS),
    ]
    return rules


def restore_rules() -> list[Manifest]:
    namespaced = _merged(NAMESPACED_TYPES, {SNAPSHOT_GROUP: ["volumesnapshots"]})
    rules = [_rule([g], sorted(r), WRITE) for g, r in namespaced.items()]
    cluster = {g: [r for r in rs if r != "namespaces"] for g, rs in CLUSTER_TYPES.items()}
    # Cluster-scoped objects are created or updated, never deleted by a restore.
    # ClusterRoles/-Bindings included: without get, an identical existing one
    # could not even be compared (403 instead of "unchanged"), and without
    # create a restore into a new cluster lacks the app's ones. The API
    # server's escalation check bounds what it creates (see the module docstring).
    rules += [_rule([g], sorted(r), ["get", "list", "watch", "create", "update", "patch"])
              for g, r in cluster.items() if r]  # fmt: skip
    rules += [
        _rule([""], ["namespaces"], ["get", "list", "watch", "create", "patch"]),
        _rule([""], ["secrets"], SECRET_WRITE),
        _rule([""], ["pods"], READ),
        _rule([""], ["pods/exec"], ["create"]),
        _rule([""], ["pods/log"], ["get"]),
        _rule([""], ["events"], EVENTS),
    ]
    return rules


def drill_workspace_rules() -> list[Manifest]:
    """Restore rights inside one scratch namespace (bound there by the drill itself)."""
    namespaced = _merged(NAMESPACED_TYPES, {SNAPSHOT_GROUP: ["volumesnapshots"]})
    rules = [_rule([g], sorted(r), WRITE) for g, r in namespaced.items()]
    rules += [
        # The restored copy's Secrets: the drill could decrypt them from the
        # repository anyway, and verification steps may need them.
        _rule([""], ["secrets"], WRITE),
        _rule([""], ["pods"], READ),
        _rule([""], ["pods/exec"], ["create"]),
        _rule([""], ["pods/log"], ["get"]),
        # ``http`` steps reach the restored app through the API server's service
        # proxy (dr.drill.steps); its HTTP methods map to these verbs: GET/HEAD
        # -> get, POST -> create, PUT -> update (PROXY_VERBS).
        _rule([""], ["services/proxy"], PROXY_VERBS),
        _rule([""], ["events"], EVENTS),
    ]
    return rules


def drill_rules() -> list[Manifest]:
    return [
        # Scratch namespaces; the admission policy limits update/delete to labelled ones.
        _rule([""], ["namespaces"], ["get", "list", "watch", "create", "patch", "delete"]),
        _rule(["rbac.authorization.k8s.io"], ["rolebindings"], ["get", "list", "create", "delete"]),
        _rule(["rbac.authorization.k8s.io"], ["clusterroles"], ["bind"], [DRILL_WORKSPACE_ROLE]),
        # ``dr drill gc``: the (cluster-scoped) snapshot contents a crashed backup cloned for its movers.
        _rule([SNAPSHOT_GROUP], ["volumesnapshotcontents"], ["get", "list", "delete"]),
        _rule([""], ["events"], EVENTS),
    ]


# Objects in dr's namespace that drills copy into their scratch namespaces
# (probe and restore movers mount them there): readable by name only.
CONFIG_OBJECTS = ("dr-config",)
FILES_OBJECTS = ("dr-files",)


def _copied_objects(credentials_secret: str | None) -> list[Manifest]:
    secrets = sorted({*FILES_OBJECTS, *([credentials_secret] if credentials_secret else [])})
    return [
        _rule([""], ["configmaps"], ["get"], list(CONFIG_OBJECTS)),
        _rule([""], ["secrets"], ["get"], secrets),
    ]


def _mover_objects(verbs: list[str]) -> list[Manifest]:
    """The kinds of temporary objects a backup leaves in dr's namespace (``dr.kube.jobs.cleanup_leftovers``)."""
    return [
        _rule(["batch"], ["jobs"], verbs),
        _rule([""], ["persistentvolumeclaims"], verbs),
        _rule([SNAPSHOT_GROUP], ["volumesnapshots"], verbs),
    ]


def workspace_rules(credentials_secret: str | None = None) -> list[Manifest]:
    """dr's own temporary objects in its namespace (data-mover Jobs, PVCs, snapshots): the backup's.

    Creating Jobs here means choosing the service account their pods run as
    (RBAC cannot restrict ``serviceAccountName``): :func:`mover_guard_policy`
    limits it to the mover account, and the drill account is not bound to
    this role at all (it gets :func:`drill_cleanup_rules`).
    """
    return [
        *_copied_objects(credentials_secret),
        *_mover_objects(TEMPORARY),
        _rule([""], ["pods"], READ),
        _rule([""], ["pods/log"], ["get"]),
        _rule([""], ["events"], EVENTS),
    ]


def drill_cleanup_rules(credentials_secret: str | None = None) -> list[Manifest]:
    """The drill account in dr's namespace: what ``dr drill run`` and ``dr drill gc`` need there.

    ``run`` copies dr-config and the credentials Secret into its scratch
    namespace (``get`` by name); ``gc`` lists and deletes the leftovers of
    crashed runs (``dr.kube.jobs.cleanup_leftovers``: Jobs, PVCs,
    VolumeSnapshots). Nothing is created here: a drill account that could
    create Jobs in dr's namespace could run them as ``dr-restore``.
    """
    return [*_copied_objects(credentials_secret), *_mover_objects(["get", "list", "delete"])]


def mover_in_namespace_rules() -> list[Manifest]:
    """File-system backups: the mover Job must run where the PVC is. Bound per app namespace, opt-in."""
    return [
        _rule(["batch"], ["jobs"], TEMPORARY),
        _rule([""], ["pods"], READ),
        _rule([""], ["pods/log"], ["get"]),
    ]


# --------------------------------------------------------------------------- objects


def service_account(name: str, namespace: str, component: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(name, component, namespace),
        # The pods talk to the API server, so the token is mounted (explicitly).
        "automountServiceAccountToken": True,
    }


def cluster_role(name: str, component: str, rules: list[Manifest]) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(name, component),
        "rules": rules,
    }


def role(name: str, namespace: str, component: str, rules: list[Manifest]) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(name, component, namespace),
        "rules": rules,
    }


def _subject(sa: str, namespace: str) -> Manifest:
    return {"kind": "ServiceAccount", "name": sa, "namespace": namespace}


def cluster_role_binding(name: str, component: str, cluster_role_name: str, sa: str, ns: str) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(name, component),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": cluster_role_name,
        },
        "subjects": [_subject(sa, ns)],
    }


def role_binding(
    name: str, namespace: str, component: str, role_kind: str, role_name: str, subjects: list[Manifest]
) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(name, component, namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name},
        "subjects": subjects,
    }


def drill_workspace_binding(scratch_namespace: str, dr_namespace: str) -> Manifest:
    """What ``dr drill run`` creates in its scratch namespace to give itself restore rights there."""
    return role_binding(
        DRILL_WORKSPACE_ROLE,
        scratch_namespace,
        "drill",
        "ClusterRole",
        DRILL_WORKSPACE_ROLE,
        [_subject(DRILL_SA, dr_namespace)],
    )


def mover_binding(app_namespace: str, dr_namespace: str) -> Manifest:
    """Opt-in: lets the backup account run file-system mover Jobs in ``app_namespace``."""
    return role_binding(
        MOVER_IN_NAMESPACE_ROLE,
        app_namespace,
        "backup",
        "ClusterRole",
        MOVER_IN_NAMESPACE_ROLE,
        [_subject(BACKUP_SA, dr_namespace)],
    )


def _has_true_label(obj: str) -> str:
    return f"has({obj}.metadata.labels) && '{DRILL_LABEL}' in {obj}.metadata.labels && {obj}.metadata.labels['{DRILL_LABEL}'] == 'true'"


def _guard_policy(
    name: str,
    component: str,
    account: str,
    constraints: dict[str, Any],
    validations: list[tuple[str, str]],
) -> list[Manifest]:
    """A ValidatingAdmissionPolicy matching only ``account``'s requests, and its Deny binding.

    ``validations`` are (CEL expression, message) pairs; each refusal is ``Forbidden``.
    """
    policy: Manifest = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": _meta(name, component),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": constraints,
            "matchConditions": [
                {
                    "name": f"{component}-service-account",
                    "expression": f"request.userInfo.username == '{account}'",
                }
            ],
            "validations": [{"expression": e, "message": m, "reason": "Forbidden"} for e, m in validations],
        },
    }
    binding: Manifest = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": _meta(name, component),
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }
    return [policy, binding]


def _resource_rule(group: str, resource: str, operations: list[str]) -> dict[str, Any]:
    return {"apiGroups": [group], "apiVersions": ["v1"], "operations": operations, "resources": [resource]}


def drill_guard_policy(namespace: str) -> list[Manifest]:
    """A ValidatingAdmissionPolicy (+ binding): the drill account touches only drill namespaces.

    RBAC cannot say "delete only namespaces labelled dr.dev/drill=true"; this
    does: it rejects the drill account's namespace updates and deletions
    unless the namespace *already* carries the label (so the account cannot
    label a production namespace and then delete it), namespace creation
    without the label, and RoleBindings outside labelled namespaces.
    """
    changes = ["CREATE", "UPDATE", "DELETE"]
    return _guard_policy(
        f"{DRILL_GUARD_POLICY}.{namespace}",
        "drill",
        f"system:serviceaccount:{namespace}:{DRILL_SA}",
        {
            "resourceRules": [
                _resource_rule("", "namespaces", changes),
                _resource_rule("rbac.authorization.k8s.io", "rolebindings", changes),
            ]
        },
        [
            (
                "request.resource.resource != 'namespaces' || request.operation == 'CREATE'"
                f" || ({_has_true_label('oldObject')})",
                f"the drill service account may only change or delete namespaces labelled {DRILL_LABEL}=true",
            ),
            (
                "request.resource.resource != 'namespaces' || request.operation == 'DELETE'"
                f" || ({_has_true_label('object')})",
                f"namespaces created or updated by the drill service account must carry {DRILL_LABEL}=true",
            ),
            (
                f"request.resource.resource != 'rolebindings' || ({_has_true_label('namespaceObject')})",
                f"the drill service account may only bind roles in namespaces labelled {DRILL_LABEL}=true",
            ),
        ],
    )


def mover_guard_policy(namespace: str) -> list[Manifest]:
    """A ValidatingAdmissionPolicy (+ binding): the backup's Jobs in dr's namespace run as mover accounts only.

    The backup account creates its data-mover Jobs in dr's namespace, and
    RBAC cannot restrict which service account a Job's pods use: without
    this, a compromised backup pod could start a Job running as
    ``dr-restore`` (cluster-wide writes). This rejects the backup account's
    Jobs and Pods there unless ``serviceAccountName`` (and the deprecated
    alias ``serviceAccount``, if set) is one of :data:`MOVER_SERVICE_ACCOUNTS`.
    Pods the Job controller creates are not the backup account's requests,
    so they are not matched.
    """
    allowed = "[" + ", ".join(f"'{sa}'" for sa in MOVER_SERVICE_ACCOUNTS) + "]"

    def runs_as_mover(spec: str) -> str:
        return (
            f"has({spec}.serviceAccountName) && {spec}.serviceAccountName in {allowed}"
            f" && (!has({spec}.serviceAccount) || {spec}.serviceAccount in {allowed})"
        )

    message = (
        f"the backup account may only run Jobs and Pods in {namespace} as {', '.join(MOVER_SERVICE_ACCOUNTS)}"
    )
    return _guard_policy(
        f"{MOVER_GUARD_POLICY}.{namespace}",
        "backup",
        f"system:serviceaccount:{namespace}:{BACKUP_SA}",
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "resourceRules": [
                _resource_rule("batch", "jobs", ["CREATE", "UPDATE"]),
                _resource_rule("", "pods", ["CREATE", "UPDATE"]),
            ],
        },
        [
            (
                f"request.resource.resource != 'jobs' || ({runs_as_mover('object.spec.template.spec')})",
                message,
            ),
            (f"request.resource.resource != 'pods' || ({runs_as_mover('object.spec')})", message),
        ],
    )


def rbac_manifests(namespace: str, credentials_secret: str | None = None) -> list[Manifest]:
    """Service accounts, roles and bindings for all three job kinds, in apply order.

    ``credentials_secret``: the repository credentials Secret (``mover.credentialsSecret``),
    readable by name in dr's namespace so drills can hand it to their movers.
    """
    ns = namespace
    # Cluster-wide names carry the namespace only when it is not the default,
    # so two dr installations in one cluster do not overwrite each other.
    suffix = "" if ns == "dr-system" else f"-{ns}"
    return [
        service_account(BACKUP_SA, ns, "backup"),
        service_account(RESTORE_SA, ns, "restore"),
        service_account(DRILL_SA, ns, "drill"),
        service_account(MAINTENANCE_SA, ns, "maintenance"),
        cluster_role(BACKUP_ROLE, "backup", backup_rules()),
        cluster_role(RESTORE_ROLE, "restore", restore_rules()),
        cluster_role(DRILL_ROLE, "drill", drill_rules()),
        cluster_role(DRILL_WORKSPACE_ROLE, "drill", drill_workspace_rules()),
        cluster_role(MOVER_IN_NAMESPACE_ROLE, "backup", mover_in_namespace_rules()),
        role(WORKSPACE_ROLE, ns, "workspace", workspace_rules(credentials_secret)),
        role(DRILL_CLEANUP_ROLE, ns, "drill", drill_cleanup_rules(credentials_secret)),
        cluster_role_binding(BACKUP_ROLE + suffix, "backup", BACKUP_ROLE, BACKUP_SA, ns),
        cluster_role_binding(RESTORE_ROLE + suffix, "restore", RESTORE_ROLE, RESTORE_SA, ns),
        cluster_role_binding(DRILL_ROLE + suffix, "drill", DRILL_ROLE, DRILL_SA, ns),
        # The backup leaves temporary objects in its namespace; gc (drill
        # account) deletes what a crashed run left behind, with its own Role
        # that creates nothing (see drill_cleanup_rules).
        role_binding(WORKSPACE_ROLE, ns, "workspace", "Role", WORKSPACE_ROLE, [_subject(BACKUP_SA, ns)]),
        role_binding(DRILL_CLEANUP_ROLE, ns, "drill", "Role", DRILL_CLEANUP_ROLE, [_subject(DRILL_SA, ns)]),
        *drill_guard_policy(ns),
        *mover_guard_policy(ns),
    ]
