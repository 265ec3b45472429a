"""``dr config validate``: check a dr.yaml and print one line per problem."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import click

from dr import config as config_model
from dr.cli.config_checks import location_problems, policy_problems, runbook_problems
from dr.cli.context import app
from dr.cli.output import emit, output_option
from dr.cli.params import NonEmpty
from dr.config import Config, problems_error, read_yaml_file, resolve_config_path, to_doc
from dr.errors import ExitCode, InvalidInput

log = logging.getLogger(__name__)


@click.group("config")
def config_group() -> None:
    """Check and show dr's configuration."""


@config_group.command("validate")
@click.argument("file", required=False, type=NonEmpty(click.Path(dir_okay=False)))
@output_option()
def validate(file: str | None, output: str) -> int:
    """Validate FILE (default: the active config) and report every problem with its line.

    Exit 2 when the file is invalid. Warnings (a schedule that a change of the clocks
    skips or runs twice) do not make it invalid.
    """
    path = Path(file) if file else resolve_config_path(app().config_file)
    if path is None:
        raise InvalidInput("no config file: give FILE, --config or $DR_CONFIG, or create ./dr.yaml")
    try:
        cfg = _checked_config(path)
    except InvalidInput as e:
        if output == "table":
            raise
        # JSON/YAML carry the problems (like `dr runbook validate`); stderr only says the file is invalid.
        emit({"file": str(path), "valid": False, "problems": list(e.details) or [e.message]}, output)
        raise InvalidInput(e.message) from None
    warnings = cfg.schedule_warnings(datetime.now(UTC))
    for w in warnings:
        log.warning("%s", w)
    summary = {
        "file": str(path),
        "valid": True,
        "problems": [],
        "warnings": warnings,
        "repositories": [r.name for r in cfg.repositories],
        "keyProviders": [k.name for k in cfg.key_providers],
        "backupPolicies": [p.name for p in cfg.backup_policies],
        "drillPolicies": [d.name for d in cfg.drill_policies],
    }
    if output == "table":
        click.echo(
            f"{path}: valid ({len(cfg.repositories)} repositories, {len(cfg.key_providers)} key providers, "
            f"{len(cfg.backup_policies)} backup policies, {len(cfg.drill_policies)} drill policies)"
        )
    else:
        emit(summary, output)
    return ExitCode.OK


def _checked_config(path: Path) -> Config:
    """The config in ``path``, once its fields, the locations in it (as the stores and
    key providers will read them), its backup policies' selectors and namespaces and
    its drill policies' runbooks are valid; else ``InvalidInput`` with a line each
    (an invalid runbook's problems with the runbook's lines, after the config's)."""
    data, lm = read_yaml_file(path)
    cfg = config_model.validate(Config, data, lm)
    runbooks, runbook_lines = runbook_problems(cfg, path.parent)
    problems = location_problems(cfg) + policy_problems(cfg) + runbooks
    if problems:
        lines = [*problems_error(lm, problems).details, *runbook_lines]
        n = len(lines)
        raise InvalidInput(f"{path}: {n} problem{'s' if n != 1 else ''}", problems=lines)
    return cfg


@config_group.command("show")
@output_option(default="yaml")
def show(output: str) -> None:
    """Print the effective configuration (the file, or the built-in defaults)."""
    loaded = app().loaded
    data = to_doc(loaded.config)
    if output == "table":
        click.echo(f"# source: {loaded.source}")
        output = "yaml"
    emit(data, output)


COMMANDS = [config_group]
