"""A runbook's verification steps against live namespaces: ``dr runbook verify``, after a real restore.

Step 5 of a drill (``dr.drill.run``) on its own. The steps run through the
drill's runner (``dr.drill.steps.run_step``), exactly as a drill runs them,
but in namespaces that exist already — the app's own after an in-place
restore, or those a restore mapped it to — so that on call one checks
exactly what the drills check, data checks included. Nothing is restored, no
namespace is created and no report is written; what the steps create (a
``job`` step's Job, a ``data`` step's probe Job) they delete again, as in a
drill.

Owns which namespace each step checks (``target_namespaces``: the runbook's
own, ``--namespace`` for its first, ``--namespace-mapping OLD=NEW`` for any)
and the check that those exist before any step runs (``missing_namespaces``):
a mistyped namespace is invalid input, not a run of failed steps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dr.config import is_dns_label
from dr.drill.model import StepResult
from dr.drill.probe import DataProbe
from dr.drill.run import APP_LABEL
from dr.drill.steps import StepContext, run_step
from dr.errors import InvalidInput
from dr.kube.client import ApiError, KubeClient
from dr.kube.exec import Exec
from dr.runbook.model import Runbook

log = logging.getLogger(__name__)


@dataclass
class VerifyDeps:
    """What the steps talk to; the CLI builds the real ones (as for a drill)."""

    api: Any  # kubernetes.client.ApiClient, for the steps
    exec: Exec
    data_probe: DataProbe


def _check_name(option: str, name: str) -> None:
    if not is_dns_label(name):
        raise InvalidInput(f"{option}: {name!r} is not a namespace name")


def target_namespaces(
    rb: Runbook, namespace: str | None = None, mapping: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The runbook's namespace -> the namespace to check: itself, unless ``namespace`` (for the
    runbook's first, the app's namespace its steps check by default) or ``mapping`` says otherwise.

    ``InvalidInput`` for a mapping of a namespace the runbook does not name, or for both options
    naming different places for the same one."""
    names = rb.concrete_namespaces()
    targets = {n: n for n in names}
    for old, new in (mapping or {}).items():
        if old not in targets:
            raise InvalidInput(
                f"--namespace-mapping {old}={new}: {old!r} is not a namespace of the runbook's scope "
                f"({', '.join(names)})"
            )
        _check_name(f"--namespace-mapping {old}={new}", new)
        targets[old] = new
    if namespace is not None:
        _check_name("--namespace", namespace)
        first = names[0]
        if targets[first] not in (first, namespace):
            raise InvalidInput(
                f"--namespace {namespace} and --namespace-mapping {first}={targets[first]} name different "
                f"namespaces for {first}"
            )
        targets[first] = namespace
    return targets


def checked_namespaces(rb: Runbook, targets: Mapping[str, str]) -> list[str]:
    """The namespaces the runbook's steps check, in the order of the steps."""
    first = rb.concrete_namespaces()[0]
    return list(dict.fromkeys(targets[rb.step_namespace(s) or first] for s in rb.spec.verification))


def missing_namespaces(kube: KubeClient, namespaces: list[str]) -> list[str]:
    """Those of ``namespaces`` the cluster does not have. One that may not be read (403: an
    account with rights in the app's namespace only) counts as there: its steps say more."""
    missing = []
    for ns in namespaces:
        try:
            kube.get(f"/api/v1/namespaces/{ns}")
        except ApiError as e:
            if e.not_found:
                missing.append(ns)
            elif e.status != 403:
                raise
    return missing


def run_verification(
    rb: Runbook,
    targets: Mapping[str, str],
    deps: VerifyDeps,
    on_result: Callable[[StepResult], None] | None = None,
) -> list[StepResult]:
    """Every verification step in order, in ``targets`` (``target_namespaces``); a failed step does not
    stop the others. ``on_result`` hears of each result as it comes (progress)."""
    first = rb.concrete_namespaces()[0]
    ctx = StepContext(
        api=deps.api,
        namespace=targets[first],
        exec=deps.exec,
        data_probe=deps.data_probe,
        namespaces=dict(targets),
        # On the Jobs a step creates: whose check it was (a drill adds its scratch label too).
        labels={APP_LABEL: rb.name[:63]},
    )
    results = []
    for step in rb.spec.verification:
        log.info("%s: step %s (%s) in %s", rb.name, step.name, step.type, ctx.target_namespace(step))
        result = run_step(step, ctx)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
