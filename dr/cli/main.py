"""The ``dr`` command: global options, command registration, exit codes.

Errors become one line on stderr and an exit code from ``dr.errors``; a
traceback is shown only with ``-v``. Click's own usage errors exit 2, which is
the contract's code for invalid input too. Ctrl-C exits 130, SIGTERM 143 and
SIGHUP (the terminal closed) 129, all after unwinding (``dr.interrupt``: post hooks thaw what pre hooks froze,
temporary objects are deleted).
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import traceback
from typing import Any

import click

from dr import __version__
from dr.cli.context import AppContext
from dr.cli.global_options import add_global_options, root_options
from dr.cli.logs import setup_logging
from dr.cli.params import attach_optional_values
from dr.errors import DrError, ExitCode
from dr.interrupt import INTERRUPTED_EXIT, Terminated, signals_handled, stop_reason
from dr.malloc_tuning import limit_malloc_arenas
from dr.redact import redact

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# Command name -> (module, summary). Modules are imported only when their command
# runs: the Kubernetes client alone takes a second to import, which a mover Job or
# `dr repo check` should not pay. The summary is the first paragraph of the
# command's help, for the list in `dr --help`, which would otherwise import every
# module (0.6 s of the 1 s it took); a test holds the two equal.
SUBCOMMANDS = {
    "config": ("config_cmd", "Check and show dr's configuration."),
    "repo": ("repo_cmd", "Create and inspect the backup repository."),
    "verify": ("repo_cmd", "Verify a backup (default: latest): every object it needs exists and is intact."),
    "forget": (
        "repo_cmd",
        "Remove backups by id or by a retention policy (grandfather-father-son), optionally prune.",
    ),
    "prune": ("repo_cmd", "Delete data no longer referenced by any backup, under the exclusive lock."),
    "key": ("key_cmd", "Manage the key slots that wrap the repository's master key."),
    "backup": ("backup_cmd", "Back up Kubernetes resources (and PVC data) into the repository."),
    "backups": ("backup_cmd", "List and inspect backups."),
    "restore": ("restore_cmd", "Restore a backup (ID or 'latest') into this cluster."),
    "drill": ("drill_cmd", "Restore drills: prove that the latest backup restores and works."),
    "report": ("report_cmd", "Reports built from the repository."),
    "runbook": ("runbook_cmd", "Application runbooks: drill steps and the human incident procedure."),
    "deploy": ("deploy_cmd", "Kubernetes manifests for running dr in the cluster."),
    "status": (
        "status_cmd",
        "Last backup and drill per policy, their age against the RPO, namespaces without a policy.",
    ),
    "mover": ("mover_cmd", "Data mover: copy a directory into or out of the repository."),
}


class LazyGroup(click.Group):
    """A group whose subcommands live in modules imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = SUBCOMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(f"dr.cli.{entry[0]}")
        cmd = next((c for c in module.COMMANDS if c.name == cmd_name), None)
        return None if cmd is None else add_global_options(cmd)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's own list of commands, made from stand-ins that carry only the summary."""
        stand_ins = {n: click.Command(n, help=summary) for n, (_, summary) in SUBCOMMANDS.items()}
        click.Group(commands=stand_ins).format_commands(ctx, formatter)


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="dr")
@root_options
@click.pass_context
def cli(
    ctx: click.Context,
    config_file: str | None,
    repo_url: str | None,
    kubeconfig: str | None,
    kube_context: str | None,
    verbose: int,
    quiet: bool,
) -> None:
    """dr — back up, restore and prove the recovery of Kubernetes applications.

    Snapshots resources and volume data into an encrypted, append-only
    repository (file://, s3://, gs://), restores them in place or elsewhere,
    and runs restore drills that verify the result.

    \b
    Exit codes: 0 success, 1 failed, 2 invalid input or configuration,
                3 partially failed, 4 verification failed.
    Stopped by a signal, dr cleans up first, then exits 130 (Ctrl-C),
    143 (SIGTERM) or 129 (SIGHUP: the terminal closed).
    """
    ctx.obj = AppContext(
        config_file=config_file,
        repo_url=repo_url,
        kubeconfig=kubeconfig,
        kube_context=kube_context,
        verbose=verbose,
        quiet=quiet,
    )
    setup_logging(verbose=verbose, quiet=quiet)


def _report(err: DrError) -> None:
    # These lines bypass the logging handler and its redaction filter. Messages
    # are built never to hold a secret; the filter's last line of defence applies
    # here too (a URL or a client library's text quoted into a message).
    click.echo(redact(f"error: {err.message}"), err=True)
    for line in err.details:
        click.echo(redact(f"  {line}"), err=True)


def _usage_error(e: click.ClickException) -> None:
    """A bad option or argument: one ``error:`` line like every other error, not click's
    "Usage: … Try … Error: …" block (scripts and people look for ``error:``)."""
    if isinstance(e, getattr(click.exceptions, "NoArgsIsHelpError", ())):
        e.show()  # `dr` or `dr drill` alone: the help is what was asked for
        return
    ctx = getattr(e, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if isinstance(e, click.UsageError) and ctx else ""
    click.echo(redact(f"error: {e.format_message()}{hint}"), err=True)


def _traceback() -> None:
    """The current exception's traceback (``-v``), redacted like the logs."""
    click.echo(redact(traceback.format_exc()), err=True, nl=False)


def _verbosity(ctx: click.Context | None, before: int) -> int:
    """-v's count: the invocation's (-v after the command too) once the root's callback has run."""
    obj = ctx.obj if ctx is not None else None
    return obj.verbose if isinstance(obj, AppContext) else before


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script; never returns."""
    args = sys.argv[1:] if argv is None else argv
    limit_malloc_arenas()
    # dr uses no pydantic plugins; looking for them reads the metadata of every
    # installed package when the first model is built (10 ms warm, ~60 ms from a
    # cold disk). The user's own setting wins.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    verbose = 0
    parsed: click.Context | None = None
    code: int = ExitCode.OK
    try:
        # SIGTERM (a CronJob's deadline, an eviction, a drain) and SIGHUP (the
        # terminal closed) unwind like Ctrl-C instead of killing the process:
        # finally blocks run.
        with signals_handled(), cli.make_context("dr", attach_optional_values(list(args))) as ctx:
            # Parsed here; ctx.obj is only made when the group's callback runs (in invoke).
            verbose, parsed = int(ctx.params.get("verbose") or 0), ctx
            rv: Any = cli.invoke(ctx)
            code = int(rv) if isinstance(rv, int) else ExitCode.OK
    except click.exceptions.Exit as e:  # --help, --version
        code = e.exit_code
    except click.ClickException as e:
        _usage_error(e)
        code = ExitCode.INVALID if e.exit_code == 2 else e.exit_code
    except Terminated as e:
        click.echo(stop_reason(e), err=True)
        code = e.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        code = INTERRUPTED_EXIT
    except DrError as e:
        verbose = _verbosity(parsed, verbose)
        if verbose:
            _traceback()
        _report(e)
        code = e.exit_code
    except BrokenPipeError:
        code = ExitCode.OK
    except Exception as e:  # a bug, or an unexpected failure of a dependency
        verbose = _verbosity(parsed, verbose)
        if verbose:
            _traceback()
        click.echo(redact(f"error: {type(e).__name__}: {e}"), err=True)
        if not verbose:
            click.echo("  (run with -v for the traceback)", err=True)
        code = ExitCode.FAILED
    if argv is None:
        # The process ends here (console script): the interpreter's final garbage
        # collections would walk every object still alive (pydantic schemas,
        # botocore models, the repository index), 60-90 ms after a large restore.
        # Frozen objects are skipped. Not when called in-process (tests): frozen
        # garbage would never be collected.
        gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    main()
