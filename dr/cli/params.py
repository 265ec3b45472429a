"""Parameter types shared by several commands (``K=V`` pairs, percentages, durations)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from dr.errors import InvalidInput
from dr.printable import printable
from dr.tags import tag_problem


class KeyValue(click.ParamType):  # type: ignore[type-arg]
    """``KEY=VALUE``; ``sep`` and the names used in the error are configurable."""

    name = "K=V"

    def __init__(self, what: str = "K=V") -> None:
        self.what = what
        self.name = what

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        key, sep, val = str(value).partition("=")
        if not sep or not key or not val:
            self.fail(f"{value!r} is not {self.what}", param, ctx)
        return key, val


class Tag(KeyValue):
    """``--tag K=V``: a key and value as ``dr.tags`` has them (a label key; one line of text)."""

    def __init__(self) -> None:
        super().__init__("K=V")

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        key, sep, val = str(value).partition("=")
        problem = tag_problem(key, val) if sep else None
        if problem:
            self.fail(f"'{printable(str(value))}': {problem}", param, ctx)
        return super().convert(value, param, ctx)


def pairs_to_dict(pairs: tuple[tuple[str, str], ...], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in pairs:
        if k in out and out[k] != v:
            raise click.BadParameter(f"{k!r} is mapped twice ({out[k]!r} and {v!r})", param_hint=option)
        out[k] = v
    return out


class NonEmpty(click.ParamType):  # type: ignore[type-arg]
    """``inner`` (text by default), refusing the empty string: ``--repo "$REPO"`` with
    $REPO unset is a mistake, not a request for the default repository. (click
    already skips an empty environment variable, so $DR_REPO="" stays "not set".)"""

    def __init__(self, inner: click.ParamType = click.STRING) -> None:  # type: ignore[type-arg]
        self.inner = inner
        self.name = inner.name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            # A required argument has no default to fall back to ("" was read as ".").
            required = isinstance(param, click.Argument) and param.required
            self.fail("empty" if required else "empty; leave the option out for the default", param, ctx)
        return self.inner.convert(value, param, ctx)


class Percent(click.ParamType):  # type: ignore[type-arg]
    """``10``, ``10%`` or ``2.5%`` -> fraction in (0, 1]; used by ``--read-data[=PCT]``."""

    name = "PCT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        given = str(value).strip()  # (attach_optional_values may have put a space before it)
        text = given.rstrip("%")
        try:
            pct = float(text)
        except ValueError:
            self.fail(f"{given!r} is not a percentage", param, ctx)
        if not 0 < pct <= 100:
            self.fail(f"{given!r} must be in (0, 100]", param, ctx)
        return pct / 100.0


class Duration(click.ParamType):  # type: ignore[type-arg]
    """``90s``, ``36h``, ``7d``, ``1h30m`` -> a timedelta: dr's duration syntax and rule, as
    in the config (``dr.config.check_positive_duration``: longer than 0, at most 36500d)."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        # Imported here: dr.config is not needed at every start (this module is).
        from dr.config import check_positive_duration

        try:
            return check_positive_duration(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


def split_csv(values: tuple[str, ...]) -> list[str]:
    """``--include-resources a,b --include-resources c`` -> [a, b, c]."""
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


# Options whose value is optional and only ever attached (``--read-data=10``): given
# bare, click would take the next argument as the value (``dr verify --read-data 4f40``
# read "4f40" as a percentage, and ``--read-data 0042`` would mean 42 % of latest).
# ``attach_optional_values`` writes the bare form out with its default first.
OPTIONAL_VALUES = {"--read-data": "100"}


def attach_optional_values(args: list[str]) -> list[str]:
    """``args`` with each bare option of ``OPTIONAL_VALUES`` given its default attached
    (``--read-data`` -> ``--read-data=100``), up to a ``--``."""
    out: list[str] = []
    for i, a in enumerate(args):
        if a == "--":
            return out + args[i:]
        name, eq, value = a.partition("=")
        if eq and name in OPTIONAL_VALUES and value.startswith("-"):
            # click takes an attached value that starts with '-' for an option of its own
            # ("No such option '-5'"); a space before it lets the type see (and refuse) it.
            a = f"{name}= {value}"
        out.append(f"{a}={OPTIONAL_VALUES[a]}" if a in OPTIONAL_VALUES else a)
    return out


read_data_option = click.option(
    "--read-data",
    "read_data",
    type=Percent(),
    is_flag=False,
    flag_value="100",
    default=None,
    metavar="[=PCT]",
    help="Also download, decrypt and check data; with =PCT only PCT percent of the packs.",
)


def check_namespace_names(given: tuple[str, ...]) -> None:
    """``InvalidInput`` for a ``-n`` value that names no namespace (``-n "$NS"`` with NS unset,
    ``-n ,``): left out, -n means every namespace, and an empty one must not mean that too."""
    for value in given:
        if not any(part.strip() for part in value.split(",")):
            raise InvalidInput(
                f"-n/--namespace {value!r}: no namespace name in it (leave -n out for every namespace)"
            )
