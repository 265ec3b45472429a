"""``dr drill run`` and ``dr drill gc``: restore into a scratch namespace, verify, report, clean up.

The order of a drill (each phase timed; their sum is the measured RTO):

1. pick the backup (``--backup`` or the app's latest) — its age when the
   drill starts is the measured RPO;
2. create the scratch namespace(s) ``<prefix>-<app>-<run id>`` (time and random
   hex; a name that exists already stops the drill: only namespaces it
   created, by uid, are deleted at the end), labelled
   ``dr.dev/drill=true`` with an expiry, isolated by NetworkPolicies (ingress
   only from the same namespace; egress only within it, to DNS and to the API
   server; dr's mover and probe pods also to the object store and Vault/KMS
   of the config) and limited by a ResourceQuota; copy dr's ConfigMap ``dr-config``
   in when data is restored or probed (mover pods mount it from their own
   namespace);
3. restore the backup into them with namespace mapping (resources, then volume
   data after the claims, before the workloads) — namespaced objects only: the
   backup's cluster-scoped objects are looked up, not created, and each one
   the cluster lacks fails the drill (a real restore would need it);
4. wait until the restored workloads are ready (time to ready), then load
   the backup's database dumps into the pods that ask for them (load dumps:
   a phase of its own, part of the RTO — the app has no data before);
5. run the runbook's verification steps in order (each with its timeout).
   Objects that failed to restore, volume data or dumps that did not arrive
   and workloads never ready go into the report's ``restore`` and fail the
   drill (exit 4) whatever the steps said: the restore was not complete;
6. write the report to the repository (``reports/``) and ``--report-dir``;
7. delete the scratch namespaces whatever happened (unless ``--keep``).

A crashed drill leaves namespaces whose ``dr.dev/expires`` label lies in the
past: ``gc`` deletes them (and leftover mover objects).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dr.deploy.network import Endpoint, endpoint_egress
from dr.deploy.rbac import DRILL_LABEL, drill_workspace_binding
from dr.deploy.workloads import CONFIG_MAP
from dr.drill.model import (
    NONE_CREATED,
    Cleanup,
    DrillReport,
    Phases,
    ReportObjectives,
    RestoreProblems,
    StepResult,
    outcome_of,
)
from dr.drill.probe import DataProbe
from dr.drill.steps import StepContext, run_step, workload_state
from dr.errors import DrError
from dr.interrupt import stop_reason
from dr.kube import apply as kapply
from dr.kube.client import ApiError, KubeClient
from dr.kube.collect import get_object, list_objects
from dr.kube.discovery import ApiResource
from dr.kube.exec import Exec
from dr.kube.jobs import MOVER_LABEL
from dr.repo.repository import Repository
from dr.repo.snapshots import Snapshot, find_snapshot, latest_to_restore, list_snapshots
from dr.restore.plan import CLUSTER_SCOPED_SKIP, RestoreOptions, UnusedClassMapping, build_plan
from dr.restore.resources import RestoreResult
from dr.restore.run import VolumeRestoreStep, backup_items, run_restore
from dr.runbook.model import RUN_ID_LENGTH, DataStep, Runbook

log = logging.getLogger(__name__)

APP_LABEL = "dr.dev/drill-app"
EXPIRES_LABEL = "dr.dev/expires"
NAMESPACES = ApiResource(group="", version="v1", kind="Namespace", plural="namespaces", namespaced=False)
SCRATCH_TYPES = {
    "Namespace": NAMESPACES,
    "NetworkPolicy": ApiResource(group="networking.k8s.io", version="v1", kind="NetworkPolicy",
                                 plural="networkpolicies", namespaced=True),
    "ResourceQuota": ApiResource(group="", version="v1", kind="ResourceQuota", plural="resourcequotas",
                                 namespaced=True),
    "RoleBinding": ApiResource(group="rbac.authorization.k8s.io", version="v1", kind="RoleBinding",
                               plural="rolebindings", namespaced=True),
    "ConfigMap": ApiResource(group="", version="v1", kind="ConfigMap", plural="configmaps", namespaced=True),
}  # fmt: skip
WORKLOADS = [
    ApiResource(group="apps", version="v1", kind="Deployment", plural="deployments", namespaced=True),
    ApiResource(group="apps", version="v1", kind="StatefulSet", plural="statefulsets", namespaced=True),
    ApiResource(group="apps", version="v1", kind="DaemonSet", plural="daemonsets", namespaced=True),
]


@dataclass
class DrillRequest:
    runbook: Runbook
    runbook_path: str
    backup_ref: str | None = None
    keep: bool = False
    report_dir: Path | None = None
    # OLD -> NEW for the restore, over the runbook's spec.drill.storageClassMapping (`dr drill run
    # --storage-class-mapping`): a backup of another cluster whose classes this one lacks.
    storage_class_mapping: dict[str, str] = field(default_factory=dict)


# (kube, repo, restored backup, source -> scratch namespace, timeout seconds) -> problems, one line each
DumpStep = Callable[[KubeClient, Repository, Snapshot, dict[str, str], float], list[str]]


@dataclass
class DrillDeps:
    """What a drill talks to; the CLI builds the real ones, tests may pass their own seams."""

    kube: KubeClient
    api: Any  # kubernetes.client.ApiClient, for the verification steps
    repo: Repository
    exec: Exec
    data_probe: DataProbe
    volume_step: VolumeRestoreStep | None = None
    dump_step: DumpStep | None = None
    dr_namespace: str = "dr-system"
    # Where movers and probes connect (object store, Vault/KMS): opened to them in scratch namespaces.
    endpoints: list[Endpoint] = field(default_factory=list)
    poll_interval: float = 2.0
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


def run_id(now: datetime) -> str:
    """``YYYYMMDD-HHMMSS-xxxx``: random hex, so that two drills of an app in the same second differ."""
    rid = f"{now:%Y%m%d-%H%M%S}-{os.urandom(2).hex()}"
    assert len(rid) == RUN_ID_LENGTH
    return rid


def app_backups(repo: Repository, rb: Runbook) -> list[Snapshot]:
    """Backups of the runbook's app: of its backup policy, or covering its namespaces."""
    wanted = set(rb.concrete_namespaces())
    out = []
    for s in list_snapshots(repo, "backup"):
        if (rb.spec.backup_policy and s.policy == rb.spec.backup_policy) or (
            wanted and wanted <= set(s.namespaces)
        ):
            out.append(s)
    return out


def pick_backup(repo: Repository, rb: Runbook, ref: str | None) -> Snapshot:
    if ref:
        backup = find_snapshot(repo, ref, kind="backup", what="backup")
    else:
        backups = app_backups(repo, rb)
        if not backups:
            raise DrError(
                f"no backup of {rb.name} in the repository (namespaces {', '.join(rb.concrete_namespaces())})"
            )
        # What `dr restore latest` would restore in an incident, so the drill proves that one:
        # the newest Completed backup, a PartiallyFailed one (warned) only when there is none,
        # never a Failed or unfinished one.
        backup = latest_to_restore(backups, what=f"backup of {rb.name}")
    check_holds_namespaces(rb, backup)
    return backup


def check_holds_namespaces(rb: Runbook, backup: Snapshot) -> None:
    """``DrError`` unless ``backup`` holds every named namespace of the runbook's scope.

    One it lacks would be restored as nothing: an RTO measured for no restore, and steps
    that fail as if the restore had lost the app (the newest backup of a policy whose scope
    no longer names the app, or ``--backup`` of another app's)."""
    missing = [ns for ns in rb.concrete_namespaces() if ns not in backup.namespaces]
    if missing:
        raise DrError(
            f"backup {backup.short_id} holds no namespace {', '.join(missing)} of {rb.name} "
            f"(it holds {', '.join(backup.namespaces) or 'none'}): a drill would restore nothing there"
        )


# --------------------------------------------------------------------------- scratch namespaces


def scratch_manifests(
    rb: Runbook, scratch: str, expires: datetime, dr_namespace: str, endpoints: list[Endpoint] | None = None
) -> list[dict[str, Any]]:
    """Namespace, isolation NetworkPolicies, ResourceQuota and the drill's RoleBinding.

    ``endpoints`` (``dr.deploy.network.config_endpoints``: the object store, Vault/KMS, …) are
    opened to dr's own pods there only — the restore movers and data probes, which read the
    repository — never to the restored application, which stays isolated.
    """
    labels = {DRILL_LABEL: "true", APP_LABEL: rb.name[:63], EXPIRES_LABEL: str(int(expires.timestamp()))}
    out: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": scratch, "labels": labels,
                      "annotations": {"dr.dev/expires-at": expires.isoformat(), "dr.dev/runbook": rb.name}}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "drill-isolation", "namespace": scratch},
         "spec": {
             "podSelector": {},
             "policyTypes": ["Ingress", "Egress"],
             # Only pods of this namespace talk to each other.
             "ingress": [{"from": [{"podSelector": {}}]}],
             "egress": [
                 {"to": [{"podSelector": {}}]},
                 {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                          "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                  "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
             ],
         }},
    ]  # fmt: skip
    # The binding right after the namespace: under the shipped roles the drill
    # account may create the policies and the quota only through it.
    out.insert(1, drill_workspace_binding(scratch, dr_namespace))
    mover_egress = endpoint_egress(endpoints or [])
    if mover_egress:
        out.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"name": "drill-movers", "namespace": scratch},
                    "spec": {"podSelector": {"matchLabels": {MOVER_LABEL: "true"}},
                             "policyTypes": ["Egress"], "egress": mover_egress}})  # fmt: skip
    if rb.spec.drill.quota:
        out.append({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "drill", "namespace": scratch},
                    "spec": {"hard": {k: str(v) for k, v in rb.spec.drill.quota.items()}}})  # fmt: skip
    return out


def api_server_egress(kube: KubeClient) -> list[dict[str, Any]]:
    """Egress to the API server's endpoints (``default/kubernetes``); [] if the cluster does not show them."""
    try:
        ep = kube.get("/api/v1/namespaces/default/endpoints/kubernetes")
    except ApiError:
        return []
    rules = []
    for subset in ep.get("subsets") or []:
        ips = [{"ipBlock": {"cidr": f"{a['ip']}/32"}} for a in subset.get("addresses") or [] if a.get("ip")]
        ports = [{"protocol": "TCP", "port": p["port"]} for p in subset.get("ports") or [] if p.get("port")]
        if ips and ports:
            rules.append({"to": ips, "ports": ports})
    return rules


def create_scratch(
    kube: KubeClient, manifests: list[dict[str, Any]], warnings: list[str], created: dict[str, str]
) -> None:
    """Create the scratch namespace and its objects; the namespace goes into ``created`` (name -> uid).

    Only a namespace this call created is recorded, so only that one is deleted afterwards: a name
    that exists already (another drill's kept namespace, anyone's) is an error, and left alone.
    """
    extra = api_server_egress(kube)
    if not extra:
        warnings.append("the API server's endpoints are not visible; scratch pods get no egress to it")
    for m in manifests:
        if m["kind"] == "NetworkPolicy" and m["metadata"]["name"] == "drill-isolation":
            m["spec"]["egress"] += extra
        try:
            stored = kapply.create(kube, SCRATCH_TYPES[m["kind"]], m)
        except ApiError as e:
            if m["kind"] == "Namespace" and e.already_exists:
                raise DrError(
                    f"scratch namespace {m['metadata']['name']} exists already; the drill does not use or "
                    "delete a namespace it did not create (run it again: the next name differs)"
                ) from None
            raise
        if m["kind"] == "Namespace":
            created[m["metadata"]["name"]] = str((stored.get("metadata") or {}).get("uid") or "")


def copy_mover_config(kube: KubeClient, dr_namespace: str, scratch: str, warnings: list[str]) -> None:
    """dr's ConfigMap ``dr-config`` into the scratch namespace: data movers and probes there mount it."""
    res = SCRATCH_TYPES["ConfigMap"]
    try:
        source = get_object(kube, res, dr_namespace, CONFIG_MAP)
        if source is None:
            warnings.append(
                f"no ConfigMap {CONFIG_MAP} in {dr_namespace}: data restore and data steps cannot run"
            )
            return
        kapply.create(kube, res, {
            "apiVersion": "v1", "kind": "ConfigMap", "data": source.get("data") or {},
            "metadata": {"name": CONFIG_MAP, "namespace": scratch,
                         "annotations": {"dr.dev/copied-from": f"{dr_namespace}/{CONFIG_MAP}"}}})  # fmt: skip
    except ApiError as e:
        warnings.append(f"cannot copy ConfigMap {dr_namespace}/{CONFIG_MAP} into {scratch}: {e.short}")


def delete_namespace(kube: KubeClient, name: str, uid: str | None = None) -> None:
    """Delete a namespace; with ``uid``, only that very namespace (409 if the name now is another's)."""
    body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}} if uid else None
    try:
        kube.call("DELETE", f"/api/v1/namespaces/{name}", body=body)
    except ApiError as e:
        if not e.not_found:
            raise


# --------------------------------------------------------------------------- cluster-scoped objects


def missing_cluster_resources(kube: KubeClient, result: RestoreResult, warnings: list[str]) -> list[str]:
    """The backup's cluster-scoped objects that the cluster lacks (the drill skipped them all).

    A real restore would create them; the drill does not (it must not change the
    cluster outside its scratch namespaces), so the app it verified may have
    worked only because they still exist — or not at all because they do not.
    One that cannot be looked up (the drill account may not read it) is a warning.
    """
    missing = []
    for r in result.items.with_outcome("skipped"):
        if r.reason != CLUSTER_SCOPED_SKIP:
            continue
        it = r.item
        base = f"/api/{it.version}" if not it.group else f"/apis/{it.group}/{it.version}"
        try:
            kube.call("GET", f"{base}/{it.resource}/{it.name}")
        except ApiError as e:
            if e.not_found:
                missing.append(f"{it.describe()}: not in the cluster; a restore would create it")
            else:
                warnings.append(f"cannot check whether {it.describe()} exists: {e.short}")
    return missing


# --------------------------------------------------------------------------- waiting for readiness


def wait_ready(
    kube: KubeClient, namespaces: list[str], timeout: float, poll: float
) -> tuple[bool, list[str]]:
    """Until every Deployment/StatefulSet/DaemonSet in ``namespaces`` is ready, or ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        pending = []
        for ns in namespaces:
            for res in WORKLOADS:
                try:
                    objs = list(list_objects(kube, res, namespace=ns))
                except ApiError:
                    continue
                for obj in objs:
                    st = workload_state(res.kind, obj)
                    if not st.ready:
                        pending.append(f"{ns}/{st.ref}: {st.state}")
        if not pending:
            return True, []
        if time.monotonic() >= deadline:
            return False, pending
        time.sleep(poll)


# --------------------------------------------------------------------------- the drill


class DrillStopped(Exception):
    """A drill stopped by a signal (Ctrl-C, SIGTERM, SIGHUP) after its cleanup ran: its report
    (outcome ``error``, saying what stopped it) and the interrupt, for the caller to raise again
    once the report is saved — a stopped drill is a drill that did not pass, not one that never was."""

    def __init__(self, report: DrillReport, interrupt: KeyboardInterrupt) -> None:
        super().__init__(report.error)
        self.report = report
        self.interrupt = interrupt


def restore_options(rb: Runbook, mapping: dict[str, str], classes: dict[str, str]) -> RestoreOptions:
    """What a drill restores: the runbook's scope into the scratch namespaces of ``mapping``,
    with the runbook's storage class mapping and the command's ``classes`` over it."""
    return RestoreOptions(
        namespace_mapping=mapping,
        namespaces=list(mapping),
        include_resources=rb.spec.scope.include_resources,
        exclude_resources=rb.spec.scope.exclude_resources,
        selector=rb.spec.scope.selector,
        # The original PVs stay with the original claims; scratch claims get new volumes.
        restore_pvs=False,
        # Nothing outside the scratch namespaces: cluster-scoped objects of the backup are checked
        # for, not created (a drill would leave them in the cluster, shared by everyone).
        cluster_resources=False,
        storage_class_mapping={**rb.spec.drill.storage_class_mapping, **classes},
        # The runbook's mapping stands for backups of another cluster: unused by this
        # cluster's own backups, it is a warning, not a drill that cannot run.
        standing_class_mappings=set(rb.spec.drill.storage_class_mapping) - set(classes),
    )


def check_class_mapping_used(
    repo: Repository, rb: Runbook, backup_ref: str | None, classes: dict[str, str]
) -> None:
    """``UnusedClassMapping`` (exit 2) when a class of ``classes``, the command's
    ``--storage-class-mapping``, is used by no claim, volume or StatefulSet the drill would
    restore: a typo. ``dr restore`` refuses it before it changes anything; a drill did so
    only after it had made its scratch namespace, and wrote an error report. Read before
    the drill starts (the backup's objects, twice, not kept); a backup that cannot be picked
    or planned is left to the drill, whose report says why."""
    if not classes:
        return
    try:
        backup = pick_backup(repo, rb, backup_ref)
        options = restore_options(rb, rb.scratch_namespaces("0" * RUN_ID_LENGTH), classes)
        build_plan(backup_items(repo, backup), options, reread=lambda: backup_items(repo, backup))
    except UnusedClassMapping:
        raise
    except DrError:
        return


def run_drill(req: DrillRequest, deps: DrillDeps) -> DrillReport:
    """Run the drill and return its report; ``DrillStopped`` (with the report) when a signal stopped it."""
    rb = req.runbook
    started = deps.now()
    rid = run_id(started)
    mapping = rb.scratch_namespaces(rid)
    main_ns = mapping[rb.concrete_namespaces()[0]]
    expires = started + rb.spec.drill.ttl
    phases = Phases()
    steps: list[StepResult] = []
    warnings: list[str] = []
    incomplete = RestoreProblems()
    error: str | None = None
    backup: Snapshot | None = None
    created: dict[str, str] = {}  # scratch namespaces this drill created -> their uid
    cleanup = Cleanup(status="pending")
    stopped: KeyboardInterrupt | None = None
    deadline = time.monotonic() + rb.spec.drill.timeout.total_seconds()
    try:
        backup = pick_backup(deps.repo, rb, req.backup_ref)
        log.info(
            "drill %s: restoring backup %s into %s", rb.name, backup.short_id, ", ".join(mapping.values())
        )
        moves_data = deps.volume_step is not None or any(
            isinstance(s, DataStep) for s in rb.spec.verification
        )
        for scratch in mapping.values():
            create_scratch(
                deps.kube,
                scratch_manifests(rb, scratch, expires, deps.dr_namespace, deps.endpoints),
                warnings,
                created,
            )
            if moves_data:
                copy_mover_config(deps.kube, deps.dr_namespace, scratch, warnings)
        options = restore_options(rb, mapping, req.storage_class_mapping)
        data_seconds = 0.0

        def timed_volumes(*args: Any) -> Any:
            nonlocal data_seconds
            t = time.monotonic()
            try:
                assert deps.volume_step is not None
                return deps.volume_step(*args)
            finally:
                data_seconds = time.monotonic() - t

        t0 = time.monotonic()
        outcome = run_restore(deps.kube, deps.repo, backup, options, restore_id=f"drill-{rid}",
                              volume_step=timed_volumes if deps.volume_step else None)  # fmt: skip
        total = time.monotonic() - t0
        # The restore's own (a standing mapping not needed, …) and its data step's (a claim not filled, …).
        warnings.extend(outcome.resources.warnings)
        phases.restore_resources = timedelta(seconds=total - data_seconds)
        phases.restore_data = timedelta(seconds=data_seconds) if deps.volume_step else None
        # In the report, not only the log: a drill whose restore was incomplete proved nothing.
        incomplete.failed_items = [i.describe() for i in outcome.resources.failures]
        incomplete.volume_errors = list(outcome.volumes.errors)
        incomplete.missing_cluster_resources = missing_cluster_resources(
            deps.kube, outcome.resources, warnings
        )
        t1 = time.monotonic()
        ready, pending = wait_ready(
            deps.kube, list(mapping.values()), max(0.0, deadline - t1), deps.poll_interval
        )
        if ready:
            phases.time_to_ready = timedelta(seconds=time.monotonic() - t1)
        else:
            # No time to ready: the drill's timeout is not a recovery time.
            incomplete.not_ready = pending
        if ready and deps.dump_step is not None:
            t_dumps = time.monotonic()
            left = max(0.0, deadline - t_dumps)
            incomplete.dump_errors = deps.dump_step(deps.kube, deps.repo, backup, mapping, left)
            phases.load_dumps = timedelta(seconds=time.monotonic() - t_dumps)
        t2 = time.monotonic()
        ctx = StepContext(api=deps.api, namespace=main_ns, exec=deps.exec, data_probe=deps.data_probe,
                          namespaces=mapping, poll_interval=deps.poll_interval,
                          labels={DRILL_LABEL: "true", APP_LABEL: rb.name[:63]},
                          # The drill's timeout is the whole drill's: no step waits past it.
                          deadline=deadline, deadline_of=rb.spec.drill.timeout)  # fmt: skip
        for step in rb.spec.verification:  # one by one: a stopped drill reports the steps it ran
            log.debug("drill %s: verification step %s", rb.name, step.name)
            steps.append(run_step(step, ctx))
        warnings.extend(w for s in steps for w in s.warning_lines())
        phases.verification = timedelta(seconds=time.monotonic() - t2)
    except DrError as e:
        error = e.message
    except Exception as e:  # the report must still be written and the namespace removed
        log.exception("drill %s failed", rb.name)
        error = f"{type(e).__name__}: {e}"
    except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM (a CronJob's deadline), SIGHUP: cleaned up below
        stopped, error = e, stop_reason(e)
    finally:
        if req.keep:
            cleanup = Cleanup(
                status="kept", message=f"kept until {expires.isoformat()} (dr drill gc removes it then)"
            )
        else:
            problems = []
            for ns, uid in created.items():
                try:
                    # The uid: never another namespace that took the name since.
                    delete_namespace(deps.kube, ns, uid or None)
                except ApiError as e:
                    problems.append(f"{ns}: {e.short}")
            cleanup = Cleanup(status="failed", message="; ".join(problems)) if problems else Cleanup(
                status="deleted", message=", ".join(created) or NONE_CREATED)  # fmt: skip
    report = DrillReport(
        id=f"{rb.name}-{rid}-{os.urandom(2).hex()}",
        app=rb.name,
        runbook=req.runbook_path,
        backup_id=backup.id if backup else None,
        backup_time=backup.time if backup else None,
        started=started,
        finished=deps.now(),
        namespace=main_ns,
        namespaces=mapping,
        phases=phases,
        objectives=ReportObjectives(rpo=rb.spec.objectives.rpo, rto=rb.spec.objectives.rto),
        restore=incomplete,
        warnings=warnings,
        steps=steps,
        outcome=outcome_of(steps, error, incomplete),
        error=error,
        cleanup=cleanup,
    )
    # The warnings and restore problems are the report's: ``dr drill run`` prints them (its summary,
    # its JSON document, the failure's details). Logged as warnings too, each was said twice or three
    # times in one run's output; at debug for -vv only.
    if warnings:
        log.debug("drill %s: %s", rb.name, "; ".join(warnings))
    for line in incomplete.lines():
        log.debug("drill %s: %s", rb.name, line)
    if stopped is not None:
        raise DrillStopped(report, stopped)
    return report


# --------------------------------------------------------------------------- reports


def save_report(repo: Repository, report: DrillReport) -> str:
    return repo.save_object("reports", report.model_dump(mode="json", by_alias=True))


def readable_reports(repo: Repository) -> tuple[list[DrillReport], dict[str, str]]:
    """The drill reports that can be read, oldest first, and ``{name: problem}`` for the others.

    One damaged report (a truncated upload, a report of a newer format) must not
    hide the others, nor fail ``dr status`` or ``dr report drills``
    (``Repository.readable_objects``). ``DrError`` when the reports cannot even be listed.
    """
    from dr.repo.format import FormatError

    def parse(name: str, doc: dict[str, Any]) -> DrillReport:
        try:
            return DrillReport.model_validate(doc)
        except ValueError as e:
            raise FormatError(f"not a drill report ({str(e).splitlines()[0]})") from None

    reports, bad = repo.readable_objects("reports", parse)
    return sorted(reports, key=lambda r: r.started), bad


def load_reports(repo: Repository) -> list[DrillReport]:
    """The readable drill reports, oldest first; each unreadable one is logged as a warning."""
    reports, bad = readable_reports(repo)
    for name, why in bad.items():
        log.warning("drill report %s cannot be read: %s", name[:16], why)
    return reports


def write_report_files(report: DrillReport, directory: Path) -> list[Path]:
    """``<id>.json`` (the report), ``<id>.md`` and ``<id>.html`` (readable views of this drill)."""
    from dr.report.drills import Month, build_monthly_report, render_markdown
    from dr.report.html import render_html

    directory.mkdir(parents=True, exist_ok=True)
    monthly = build_monthly_report([report], Month.of(report.started), generated=report.finished)
    paths = []
    for ext, text in (("json", report.to_json() + "\n"), ("md", render_markdown(monthly)),
                      ("html", render_html(monthly))):  # fmt: skip
        p = directory / f"{report.id}.{ext}"
        p.write_text(text, encoding="utf-8")
        paths.append(p)
    return paths


# --------------------------------------------------------------------------- gc


@dataclass
class GcResult:
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def gc(kube: KubeClient, now: datetime, *, dry_run: bool = False) -> GcResult:
    """Delete drill namespaces whose expiry has passed."""
    result = GcResult()
    for ns in list_objects(kube, NAMESPACES, label_selector=f"{DRILL_LABEL}=true"):
        meta = ns.get("metadata") or {}
        name = meta.get("name", "")
        label = (meta.get("labels") or {}).get(EXPIRES_LABEL)
        try:
            expires = int(label) if label is not None else None
        except ValueError:
            expires = None
        if expires is None:
            # A drill always sets it: a namespace without it (labelled by hand, or by a
            # copy of a drill's manifests) is not one gc may assume expired; deleting a
            # namespace cannot be undone.
            result.errors.append(
                f"{name}: labelled {DRILL_LABEL}=true without a valid {EXPIRES_LABEL} label (a drill "
                "always sets it): not deleted; delete it by hand if it is a drill's"
            )
            continue
        if expires > now.timestamp():
            result.kept.append(name)
            continue
        if not dry_run:
            try:
                # The uid listed: not a namespace that took the name after the listing.
                delete_namespace(kube, name, meta.get("uid"))
            except ApiError as e:
                result.errors.append(f"{name}: {e.short}")
                continue
        result.deleted.append(name)
    return result
