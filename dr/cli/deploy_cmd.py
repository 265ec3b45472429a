"""``dr deploy render``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dr.cli.context import app
from dr.cli.params import NonEmpty
from dr.config import load_config
from dr.deploy.policies import ENGINES, policy_stream
from dr.deploy.render import read_source, render, to_yaml_stream
from dr.errors import InvalidInput


@click.group("deploy")
def deploy_group() -> None:
    """Kubernetes manifests for running dr in the cluster."""


@deploy_group.command("render")
@click.option(
    "--config",
    "config_file",
    type=NonEmpty(click.Path(dir_okay=False)),
    metavar="FILE",
    help="dr.yaml whose policies become CronJobs (default: the active config).",
)
@click.option(
    "--policies",
    "engine",
    type=click.Choice(ENGINES),
    default=None,
    help="Print the admission policies for application namespaces for this engine instead.",
)
def render_cmd(config_file: str | None, engine: str | None) -> None:
    """Print CronJobs (and the RBAC they need) for the config's backup and drill policies.

    \b
    One YAML stream for `kubectl apply -f -`: the namespace, service accounts,
    roles and bindings, network policies, a ConfigMap with the config file, a
    CronJob per backup policy (`dr backup --policy NAME`) and per drill policy
    (`dr drill run`, runbook from a ConfigMap), and a daily `dr drill gc`.
    Secrets are referenced by name, never rendered.

    \b
    With --policies kyverno|gatekeeper: the Kyverno or Gatekeeper policies
    for application namespaces instead (backup-policy label, no root
    containers, a NetworkPolicy in every namespace), exempting the config's
    dr namespace (mover.namespace) where deploy/policies/ says dr-system.
    """
    loaded = load_config(config_file) if config_file else app().loaded
    if loaded.source == "built-in defaults":
        raise InvalidInput(
            "dr deploy render: no configuration file (give --config, set $DR_CONFIG or add ./dr.yaml); "
            "the CronJobs come from its backup and drill policies"
        )
    if engine is not None:
        sys.stdout.write(policy_stream(engine, loaded.config.mover.namespace, loaded.source))
        return
    source = read_source(loaded.config, Path(loaded.source))
    sys.stdout.write(to_yaml_stream(render(source), loaded.source))


COMMANDS = [deploy_group]
