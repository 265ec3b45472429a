"""dr's global options, before the command or after it (``dr backup -n shop -v``), as kubectl's and velero's.

The root group takes them before the command and makes the invocation's
``AppContext`` from them. Every command and group below it gets a copy of each
(``add_global_options``, called as the lazy root loads a command), except where
it has an option of that name of its own: ``dr deploy render --config`` and
``dr mover … --repo`` keep theirs, which mean the same for that command. A copy
given on the command line changes the ``AppContext`` as it is parsed: the
root's callback has made it by then, and the command's body, which reads it,
has not run yet.

Given both before and after the command, the later one wins, except ``-v``,
whose counts add up (``dr -v backup -v`` is ``-vv``, as a count flag anywhere on
a cobra command line), and ``--quiet``, a flag that nothing turns off. The
environment ($DR_CONFIG, $DR_REPO) is read by the root's options only: a copy
counts only when it is given. ``--help`` lists the copies under "Global options",
after the command's own.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from dr.cli.context import app
from dr.cli.logs import setup_logging
from dr.cli.params import NonEmpty

F = TypeVar("F", bound=Callable[..., Any])

# (declarations, keyword arguments) of each global option, as the root group takes it.
GLOBAL_OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (
        ("--config", "config_file"),
        {
            "metavar": "FILE",
            "type": NonEmpty(),
            "envvar": "DR_CONFIG",
            "help": "Configuration file (default: $DR_CONFIG, then ./dr.yaml, then built-in defaults).",
        },
    ),
    (
        ("--repo", "repo_url"),
        {
            "metavar": "URL",
            "type": NonEmpty(),
            "envvar": "DR_REPO",
            "help": "Repository URL; overrides the config (default: $DR_REPO).",
        },
    ),
    (
        ("--kubeconfig",),
        {
            "metavar": "FILE",
            "type": NonEmpty(),
            "help": "Kubeconfig file (default: $KUBECONFIG, ~/.kube/config).",
        },
    ),
    (
        ("--context", "kube_context"),
        {"metavar": "NAME", "type": NonEmpty(), "help": "Kubeconfig context to use."},
    ),
    (("-v", "--verbose"), {"count": True, "help": "More output; -v shows tracebacks, -vv debug logs."}),
    (("--quiet",), {"is_flag": True, "help": "Only errors and requested data."}),
)


def root_options(f: F) -> F:
    """The global options on the root group (``@root_options``)."""
    for decls, kwargs in reversed(GLOBAL_OPTIONS):
        f = click.option(*decls, **kwargs)(f)
    return f


def _apply(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """A copy given after the command: into the invocation's ``AppContext``."""
    name = param.name
    if name is None or ctx.get_parameter_source(name) is not ParameterSource.COMMANDLINE:
        return
    obj = app(ctx)
    if name == "verbose":
        obj.verbose += int(value)
    elif name == "quiet":
        obj.quiet = obj.quiet or bool(value)
    else:
        setattr(obj, name, value)
        # Nothing reads them before a command's body; should an option's callback have,
        # the config and clients made from the old values are not kept.
        obj._loaded = None
        obj._cache.clear()
    if name in ("verbose", "quiet"):
        setup_logging(verbose=obj.verbose, quiet=obj.quiet)


class GlobalOption(click.Option):
    """The copy of a global option that a command takes after its name."""

    def __init__(self, decls: tuple[str, ...], kwargs: dict[str, Any]) -> None:
        own = {k: v for k, v in kwargs.items() if k != "envvar"}
        super().__init__(list(decls), expose_value=False, callback=_apply, **own)


def _format_options(self: click.Command, ctx: click.Context, formatter: click.HelpFormatter) -> None:
    """The command's own options, then the global ones (cobra's "Global Flags"), then a group's commands."""
    own: list[tuple[str, str]] = []
    shared: list[tuple[str, str]] = []
    for p in self.get_params(ctx):
        record = p.get_help_record(ctx)
        if record is not None:
            (shared if isinstance(p, GlobalOption) else own).append(record)
    for title, rows in (("Options", own), ("Global options", shared)):
        if rows:
            with formatter.section(title):
                formatter.write_dl(rows)
    if isinstance(self, click.Group):
        self.format_commands(ctx, formatter)


def add_global_options(cmd: click.Command) -> click.Command:
    """``cmd`` (and, for a group, every command below it) taking the global options
    after its name too; once per command object (modules are imported once)."""
    if not getattr(cmd, "_dr_global_options", False):
        taken = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {p.name for p in cmd.params}
        for decls, kwargs in GLOBAL_OPTIONS:
            copy = GlobalOption(decls, kwargs)
            if taken.isdisjoint({*copy.opts, copy.name}):
                cmd.params.append(copy)
        cmd.format_options = types.MethodType(_format_options, cmd)  # type: ignore[method-assign]
        cmd._dr_global_options = True  # type: ignore[attr-defined]
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            add_global_options(sub)
    return cmd
