"""``dr deploy render``: the Kubernetes objects that run a config's schedules in the cluster.

Schedules live in one place, the config: each backup policy becomes a
CronJob running ``dr backup --policy NAME``, each drill policy a CronJob
running ``dr drill run`` on its runbook (shipped in a ConfigMap), plus a
daily ``dr drill gc``. Around them: the namespace (Pod Security
``restricted``), the service accounts and roles (``dr.deploy.rbac``), the
network policies (``dr.deploy.network``) and the ConfigMap holding the
config file itself. The output is one YAML stream in apply order, for
``kubectl apply -f -``.

Credentials are never rendered: the config may only name Secrets
(``mover.credentialsSecret``, the optional ``dr-files``), which the operator
creates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from dr.backup.namespace_globs import is_glob
from dr.config import Config, default_config, load_yaml
from dr.deploy.network import config_endpoints, network_policies
from dr.deploy.rbac import BACKUP_SA, DRILL_SA, MAINTENANCE_SA, mover_binding, rbac_manifests
from dr.deploy.workloads import (
    CONFIG_MAP,
    RUNBOOK_DIR,
    JobSpec,
    PodSettings,
    cronjob,
    cronjob_name,
    namespace_manifest,
)
from dr.errors import InvalidInput
from dr.kube.pod_template import Manifest, labels
from dr.runbook.model import parse_runbook, runbook_candidates

log = logging.getLogger(__name__)

GC_SCHEDULE = "30 5 * * *"
# Retention: each backup policy's `dr forget` daily (in its time zone), after the night's
# backups; `dr prune` of each repository weekly, when the week's forgets are done. Prune
# holds the exclusive lock while it runs: backups that start meanwhile fail and are retried.
FORGET_SCHEDULE = "45 3 * * *"
PRUNE_SCHEDULE = "15 4 * * 0"
MAX_CONFIGMAP_BYTES = 1024 * 1024  # the API server's limit for one ConfigMap


@dataclass(frozen=True)
class ConfigSource:
    """The parsed config and the file it came from (its text goes into the ConfigMap)."""

    config: Config
    path: Path
    text: str


def read_source(config: Config, path: Path) -> ConfigSource:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InvalidInput(f"{path}: cannot read: {e}") from None
    return ConfigSource(config, path, text)


def _config_map(name: str, namespace: str, component: str, data: dict[str, str], what: str) -> Manifest:
    size = sum(len(v.encode()) for v in data.values())
    if size > MAX_CONFIGMAP_BYTES:
        raise InvalidInput(f"{what}: {size} bytes is more than a ConfigMap holds ({MAX_CONFIGMAP_BYTES})")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels(component)},
        "data": data,
    }


def _find_runbook(src: ConfigSource, index: int) -> tuple[Path, str]:
    runbook = src.config.drill_policies[index].runbook
    candidates = runbook_candidates(runbook, src.path.parent)
    for path in candidates:
        if path.is_file():
            try:
                return path, path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise InvalidInput(f"{path}: cannot read runbook: {e}") from None
    _, lm = load_yaml(src.text, str(src.path))
    line, col = lm.locate(("drillPolicies", index, "runbook"))
    looked = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise InvalidInput(
        f"{src.path}:{line}:{col}: drillPolicies[{index}].runbook: {runbook}: no such file (looked for {looked})"
    )


# Time a drill Job needs beyond its runbook's drill timeout: pulling the image, opening the
# repository, deleting the scratch namespace and writing the report.
DRILL_DEADLINE_MARGIN = timedelta(minutes=15)


def render(src: ConfigSource) -> list[Manifest]:
    """All objects, in the order ``kubectl apply`` must create them."""
    cfg = src.config
    ns = cfg.mover.namespace
    pod = PodSettings(
        ns, cfg.mover.image, cfg.mover.resources, cfg.mover.credentials_secret, cfg.mover.tmp_size_limit
    )
    deadline: timedelta = cfg.mover.deadline
    objects: list[Manifest] = [namespace_manifest(ns), *rbac_manifests(ns, cfg.mover.credentials_secret)]
    objects += network_policies(ns, config_endpoints(cfg))
    objects.append(_config_map(CONFIG_MAP, ns, "config", {"dr.yaml": src.text}, str(src.path)))

    jobs: list[JobSpec] = []
    movers: list[str] = []
    # As `dr config validate`: a schedule the CronJob skips or runs twice when the clocks change.
    for w in cfg.schedule_warnings(datetime.now(UTC)):
        log.warning("%s", w)
    for p in cfg.backup_policies:
        jobs.append(
            JobSpec(
                name=cronjob_name("dr-backup", p.name),
                component="backup",
                args=["backup", "--policy", p.name],
                schedule=p.schedule,
                time_zone=p.time_zone,
                service_account=BACKUP_SA,
                deadline=deadline,
                policy=p.name,
                post_hooks=sum((h.timeout for hs in p.hooks for h in hs.post), timedelta(0)),
            )
        )
        # File-system copies run a mover Job next to the PVC; bind that right
        # where the policy names a namespace (globs: bind per namespace by hand).
        if p.volumes.mode in ("auto", "filesystem"):
            movers += [n for n in p.scope.namespaces if not is_glob(n) and n not in movers]
    jobs += _retention_jobs(cfg, deadline)
    for i, d in enumerate(cfg.drill_policies):
        path, text = _find_runbook(src, i)
        # The Job must outlive the drill's own timeout (plus its start and clean-up): cut
        # off by the mover deadline, a long drill left no report and its scratch namespace.
        drill = parse_runbook(text, str(path)).spec.drill
        drill_deadline = max(deadline, drill.timeout + DRILL_DEADLINE_MARGIN)
        _warn_if_schedules_differ(d.name, d.schedule, d.time_zone, drill.schedule, drill.time_zone, path)
        cm_name = f"dr-runbook-{d.name}"
        objects.append(_config_map(cm_name, ns, "drill", {"runbook.yaml": text}, str(path)))
        jobs.append(
            JobSpec(
                name=cronjob_name("dr-drill", d.name),
                component="drill",
                args=["drill", "run", f"{RUNBOOK_DIR}/{d.name}.yaml", "--policy", d.name],
                schedule=d.schedule,
                time_zone=d.time_zone,
                service_account=DRILL_SA,
                deadline=drill_deadline,
                starting_deadline=timedelta(hours=6),
                # A failed drill is a finding for the report, not something to retry.
                backoff_limit=0,
                policy=d.name,
                extra_files=[
                    {
                        "configMap": {
                            "name": cm_name,
                            "items": [{"key": "runbook.yaml", "path": f"runbooks/{d.name}.yaml"}],
                        }
                    }
                ],
            )
        )
    jobs.append(
        JobSpec(
            name="dr-drill-gc",
            component="gc",
            args=["drill", "gc"],
            schedule=GC_SCHEDULE,
            service_account=DRILL_SA,
            deadline=timedelta(minutes=30),
            starting_deadline=timedelta(hours=6),
            backoff_limit=2,
        )
    )
    objects += [mover_binding(app_ns, ns) for app_ns in movers]
    objects += [cronjob(j, pod) for j in jobs]
    return objects


def _warn_if_schedules_differ(
    policy: str, schedule: str, time_zone: str | None, said: str | None, said_zone: str | None, runbook: Path
) -> None:
    """The drill CronJob runs on its policy's schedule; the runbook's own ``spec.drill.schedule``
    is what its rendered page tells the on-call engineer. Two different ones mislead."""
    if said is None:
        return
    utc = ("UTC", "Etc/UTC")
    zone = "UTC" if time_zone in (None, *utc) else time_zone
    said_in = "UTC" if said_zone in (None, *utc) else said_zone
    if (" ".join(said.split()), said_in) != (" ".join(schedule.split()), zone):
        log.warning(
            "drill policy %s runs %r (%s) but its runbook %s says %r (%s): the CronJob follows the "
            "policy, the rendered runbook the runbook",
            policy, schedule, zone, runbook, said, said_in,
        )  # fmt: skip


def _retention_jobs(cfg: Config, deadline: timedelta) -> list[JobSpec]:
    """``dr forget --policy P`` for each backup policy with a retention, and ``dr prune`` of
    each repository such a policy writes to: without them a policy's retention is never
    applied and the repository only grows. Both run as an account with no rights in the
    cluster: they only talk to the repository (and its key provider)."""
    jobs: list[JobSpec] = []
    # URL -> (its name, whether a policy names it; else it is the default, which `dr prune`
    # opens without --repo: the built-in default's URL is a path on this machine).
    repositories: dict[str, tuple[str, bool]] = {}
    for p in cfg.backup_policies:
        r = p.retention
        rules = (r.keep_last, r.keep_hourly, r.keep_daily, r.keep_weekly, r.keep_monthly, r.keep_yearly)
        if not any(rules) and not r.keep_within:
            continue  # no retention: keep every backup
        jobs.append(
            JobSpec(
                name=cronjob_name("dr-forget", p.name),
                component="maintenance",
                args=["forget", "--policy", p.name],
                schedule=FORGET_SCHEDULE,
                time_zone=p.time_zone,
                service_account=MAINTENANCE_SA,
                deadline=deadline,
                starting_deadline=timedelta(hours=6),
                policy=p.name,
            )
        )
        repo = cfg.repository(p.repository) or default_config().repository()
        assert repo is not None
        named = bool(p.repository) and repo is not cfg.repository(None)
        repositories[repo.url] = (repo.name, named or repositories.get(repo.url, ("", False))[1])
    for url, (name, named) in repositories.items():
        jobs.append(
            JobSpec(
                name=cronjob_name("dr-prune", name),
                component="maintenance",
                # --repo picks the configured repository by its URL (with its store options).
                args=["--repo", url, "prune"] if named else ["prune"],
                schedule=PRUNE_SCHEDULE,
                service_account=MAINTENANCE_SA,
                deadline=deadline,
                starting_deadline=timedelta(hours=6),
            )
        )
    return jobs


class _NoAliasDumper(yaml.SafeDumper):
    """Shared label dicts must print in full: anchors and aliases confuse readers of manifests."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def to_yaml_stream(objects: list[Manifest], source: str) -> str:
    header = f"# Generated by `dr deploy render` from {source}. Apply with: kubectl apply -f -\n"
    docs = [
        yaml.dump(o, Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
        for o in objects
    ]
    return header + "---\n" + "---\n".join(docs)
