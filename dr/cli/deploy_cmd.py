"""``dr deploy render``."""

from __future__ import annotations

import click

from dr.errors import NotImplementedYet


@click.group("deploy")
def deploy_group() -> None:
    """Kubernetes manifests for running dr in the cluster."""


@deploy_group.command("render")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="dr.yaml whose policies become CronJobs (default: the active config).",
)
def render(config_file: str | None) -> None:
    """Print CronJobs (and the RBAC they need) for the config's backup and drill policies."""
    raise NotImplementedYet("dr deploy render")


COMMANDS = [deploy_group]
