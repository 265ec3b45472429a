"""``dr.yaml``: typed dataclasses, their validation, the YAML loader that remembers lines, and defaults.

Owns the configuration contract (architecture doc, "Outside contracts"): which
file is read (``--config``, then ``$DR_CONFIG``, then ``./dr.yaml``, then the
embedded defaults), what it may contain, and how problems are reported — one
line per problem, ``FILE:LINE:COL: field.path: reason``, exit 2. The YAML
loader and the problem lines are shared with the runbook (``dr.yaml_models``).

YAML field names are camelCase like Kubernetes manifests; unknown fields are
errors (a misspelt ``keepDialy`` must not silently disable retention).

Why plain dataclasses and a small validator here, not pydantic like the
runbook: every mover Job and nearly every command loads this file first, and
importing pydantic and building the models' schemas cost ~0.25 s of each
start from a cold disk (measured with ``-X importtime``); the validator below
needs only the standard library. A field's type says what is accepted
(``str``, ``int``, ``bool``, ``Literal``, ``X | None``, ``list[X]``,
``dict[str, str]``, ``timedelta``, another model); ``field`` metadata adds
bounds, patterns and checks; a model's ``_check`` covers what spans fields.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from dr.cron import CronError, dst_effects, parse_cron, parse_duration
from dr.errors import InvalidInput
from dr.tags import check_tags
from dr.urls import bucket_problem, credential_shaped, has_query_or_fragment, redact_url

if TYPE_CHECKING:
    import yaml

# Schemes the storage and key-provider registries implement. Kept here (the
# bottom layer) so the config can be checked without importing clients; a test
# asserts that the registries agree.
REPOSITORY_SCHEMES = ("file", "s3", "gs")
KEY_PROVIDER_SCHEMES = ("local", "vault", "awskms", "gcpkms")


# --------------------------------------------------------------------------- YAML with line numbers

Path_ = tuple[str | int, ...]
Problem = tuple[tuple[Any, ...], str]  # (field path, reason)


@dataclass
class LineMap:
    """Where each value of a YAML document came from: path -> (line, column), 1-based."""

    filename: str
    marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    # Where an alias stands -> the path its anchor's value was first built at: the values
    # inside it are marked there only (an alias's value is built once, see _construct).
    aliases: dict[Path_, Path_] = field(default_factory=dict)

    def locate(self, path: Path_) -> tuple[int, int]:
        # A value inside an alias is where it is written: under its anchor. Each step goes
        # to a path built earlier, so the walk ends; bounded all the same.
        for _ in range(len(self.aliases)):
            inner = next((n for n in range(len(path) - 1, 0, -1) if path[:n] in self.aliases), None)
            if inner is None:
                break
            path = (*self.aliases[path[:inner]], *path[inner:])
        # The deepest prefix of the path that exists in the document: a missing
        # field is reported at the mapping that should have held it.
        for n in range(len(path), -1, -1):
            if path[:n] in self.marks:
                return self.marks[path[:n]]
        return (1, 1)


class _Refused(Exception):
    """What load_yaml refuses in a parsed document, and where (``text`` follows ``FILE:LINE:COL: ``)."""

    def __init__(self, text: str, line: int, col: int) -> None:
        self.text, self.line, self.col = text, line, col


# What _construct keeps of a node it has started: the node itself (so that its
# id stays its own), its value, or _BUILDING until that value is complete, and
# the path it was first built at.
_Built = dict[int, tuple["yaml.Node", Any, Path_]]
_BUILDING: Any = object()


def _construct(node: yaml.Node, path: Path_, lm: LineMap, loader: yaml.SafeLoader, built: _Built) -> Any:
    """The value of ``node``, marking where each of its values came from in ``lm``.

    An alias is the node of its anchor, met again: its value is built once and
    shared, as yaml.safe_load does (a walk of every path would take exponential
    time for nested aliases, the "billion laughs"), and its inner values keep the
    marks of the place first seen (``LineMap.aliases`` leads there). An alias
    inside its own anchor is refused."""
    import yaml

    lm.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    seen = built.get(id(node))
    if seen is not None:
        if seen[1] is _BUILDING:
            raise _Refused("invalid YAML: an alias inside its own anchor", node.start_mark.line + 1,
                           node.start_mark.column + 1)  # fmt: skip
        lm.aliases[path] = seen[2]
        return seen[1]
    if isinstance(node, yaml.MappingNode):
        built[id(node)] = (node, _BUILDING, path)
        # The keys written in this mapping: flatten_mapping puts the merged ones (``<<: *a``)
        # before them, and a key written here overrides a merged one (YAML's merge type, as
        # yaml.safe_load reads it); only a key written twice here is a duplicate.
        own = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        written: set[str] = set()
        for knode, vnode in node.value:
            # Every key of dr's documents is text. Another one is refused as the document's
            # mistake: a list or mapping cannot be a dict key ("unhashable type"), and 1 and
            # true are one key to Python; YAML 1.1 reads on:, yes:, null: as no text at all.
            where = (knode.start_mark.line + 1, knode.start_mark.column + 1)
            if not isinstance(knode, yaml.ScalarNode):
                raise _Refused("invalid YAML: a key must be text, not a list or mapping", *where)
            key = loader.construct_object(knode, deep=True)
            if not isinstance(key, str):
                raise _Refused(
                    f"invalid YAML: key {knode.value!r} is not text (quote it: '{knode.value}')", *where
                )
            if key in written:
                raise _Refused(f"duplicate key {key!r}", *where)
            if id(knode) in own:
                written.add(key)
            if key in out:  # a merged value overridden here: so are the aliases inside it
                for inner in [p for p in lm.aliases if p[: len(path) + 1] == (*path, key)]:
                    del lm.aliases[inner]
            sub = (*path, key)
            out[key] = _construct(vnode, sub, lm, loader, built)
            # Point the field at its key: "line of the field" is where its name is.
            lm.marks[sub] = (knode.start_mark.line + 1, knode.start_mark.column + 1)
        built[id(node)] = (node, out, path)
        return out
    if isinstance(node, yaml.SequenceNode):
        built[id(node)] = (node, _BUILDING, path)
        items = [_construct(v, (*path, i), lm, loader, built) for i, v in enumerate(node.value)]
        built[id(node)] = (node, items, path)
        return items
    return loader.construct_object(node, deep=True)


def load_yaml(text: str, filename: str) -> tuple[Any, LineMap]:
    """Parse one YAML document, returning the data and where each value came from."""
    import yaml  # only when there is a file: the embedded defaults need no parser

    lm = LineMap(filename)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, lm
        return _construct(node, (), lm, loader, {}), lm
    except _Refused as e:
        raise InvalidInput(f"{filename}:{e.line}:{e.col}: {e.text}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        raise InvalidInput(f"{where}: invalid YAML: {e.problem or e.context}") from None
    except RecursionError:
        # The parser recurses once per level of nesting: [[[[...]]]] thousands deep.
        mark = loader.get_mark()
        raise InvalidInput(
            f"{filename}:{mark.line + 1}:{mark.column + 1}: invalid YAML: nested too deeply"
        ) from None
    finally:
        loader.dispose()


def read_yaml_file(path: Path) -> tuple[Any, LineMap]:
    """Read and parse a YAML file; a missing or unreadable file is ``InvalidInput``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except OSError as e:
        raise InvalidInput(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        # Where, as a line and column (in characters, as the YAML errors count them).
        line_start = data.rfind(b"\n", 0, e.start) + 1
        line = data.count(b"\n", 0, e.start) + 1
        col = len(data[line_start : e.start].decode("utf-8", "replace")) + 1
        raise InvalidInput(f"{path}:{line}:{col}: not UTF-8 text (byte 0x{data[e.start]:02x})") from None
    return load_yaml(text, str(path))


def field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(document)"


def problems_error(lm: LineMap, located: list[Problem]) -> InvalidInput:
    """One ``FILE:LINE:COL: field.path: reason`` line per problem, in document order."""
    placed = sorted((lm.locate(loc), loc, msg) for loc, msg in located)
    problems = [f"{lm.filename}:{line}:{col}: {field_path(loc)}: {msg}" for (line, col), loc, msg in placed]
    n = len(problems)
    return InvalidInput(f"{lm.filename}: {n} problem{'s' if n != 1 else ''}", problems=problems)


# --------------------------------------------------------------------------- field checks


def check_cron(v: str) -> str:
    try:
        parse_cron(v)
    except CronError as e:
        raise ValueError(f"invalid cron expression {v!r}: {e}") from None
    return v


# Longer than any objective, retention or timeout means; and far enough from timedelta's and
# datetime's limits that ``now + duration`` (a drill's expiry) cannot overflow.
DURATION_MAX = timedelta(days=36500)


def check_duration(v: Any) -> timedelta:
    if isinstance(v, timedelta):
        d = v
    elif not isinstance(v, str | int | float) or isinstance(v, bool):
        raise ValueError("expected a duration such as 90s, 15m, 24h or 7d")
    else:
        try:
            d = parse_duration(v)
        except OverflowError:
            # timedelta's own limit (1e9 days): a ValueError, so the file:line:col of the field is named.
            raise ValueError(f"duration {v!r} is too long (at most {DURATION_MAX.days}d)") from None
    if d > DURATION_MAX:
        raise ValueError(f"duration {v!r} is too long (at most {DURATION_MAX.days}d)")
    return d


def check_positive_duration(v: Any) -> timedelta:
    """A duration that bounds some work: 0 would leave none (a Job with
    ``activeDeadlineSeconds: 0`` is out of time as it starts)."""
    d = check_duration(v)
    if d <= timedelta(0):
        raise ValueError(f"duration {v!r} must be longer than 0")
    return d


def check_time_zone(v: str) -> str:
    """An IANA time zone the CronJob (and ``dr status``) can use: a misspelt one was
    rendered as it was and read as UTC by ``dr status``."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        # Files of the local tz database that name no IANA zone: the API server and the
        # CronJob controller (Go's tzdata) know none of them, and 'localtime' is whatever
        # zone this machine has; right/ zones count leap seconds (27 s off).
        if v in ("localtime", "posixrules") or v.startswith(("posix/", "right/")):
            raise ZoneInfoNotFoundError(v)
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {v!r} (an IANA name such as Europe/Berlin or Etc/UTC)") from None
    return v


# Kubernetes resource quantities (2, 500m, 4Gi, 1e3), as the API server parses them.
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")


def check_quantity(q: str) -> str:
    if not QUANTITY.match(str(q)):
        raise ValueError(f"invalid quantity {q!r} (examples: 2, 500m, 4Gi)")
    return q


def check_quantities(v: dict[str, str]) -> dict[str, str]:
    for name, q in v.items():
        try:
            check_quantity(q)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    return v


def check_size(q: str) -> str:
    """A quantity that sizes something (an emptyDir): 0 or less leaves no room at all."""
    check_quantity(q)
    number = re.match(r"[+-]?[\d.]*", q)  # a valid float's text: QUANTITY's suffixes are letters
    if not number or float(number.group()) <= 0:
        raise ValueError(f"quantity {q!r} must be more than 0")
    return q


def scheme_checker(kind: str, schemes: tuple[str, ...]) -> Callable[[str], str]:
    def check(v: str) -> str:
        # Messages quote the URL redacted: one refused here may carry a secret in its query.
        shown = redact_url(v)
        try:
            parts = urlsplit(v)
        except ValueError:
            raise ValueError(f"{kind} URL {shown!r} is malformed") from None
        if parts.password or parts.username:
            # Credentials come from the standard chains, never from URLs (URLs
            # end up in logs, snapshots and process listings). Checked first:
            # the messages below quote the URL.
            raise ValueError(f"{kind} URL must not contain credentials")
        if parts.scheme in ("s3", "gs") and credential_shaped(parts.netloc):
            # s3://KEY:SECRET/prefix: user info without its '@' (no bucket name holds a ':').
            raise ValueError(f"{kind} URL must not contain credentials")
        if kind == "key provider" and has_query_or_fragment(v):
            # As the key-provider registry reads them: no provider reads a query or fragment.
            raise ValueError(f"{kind} URL {shown!r} takes no '?' or '#'")
        if parts.scheme not in schemes:
            known = ", ".join(f"{s}://" for s in schemes)
            got = f"scheme {parts.scheme + '://'!r}" if parts.scheme else "no scheme"
            raise ValueError(f"unsupported {kind} URL {shown!r}: {got} (supported: {known})")
        # As the store and key-provider registries read them: an absolute path, no host
        # (file://rel/x would name /x on a host "rel", which they refuse when opening it).
        hosts = ("", "localhost") if parts.scheme == "file" else ("",)
        if parts.scheme in ("file", "local") and (
            not parts.path.startswith("/") or parts.netloc not in hosts
        ):
            raise ValueError(f"{kind} URL {shown!r} needs an absolute path ({parts.scheme}:///abs/path)")
        if parts.scheme in ("s3", "gs"):
            if not parts.netloc:
                raise ValueError(f"{kind} URL {shown!r} names no bucket ({parts.scheme}://bucket/prefix)")
            # The stores' own rules (they check again when opened), so that a bad
            # name is found by `dr config validate`, not first by a scheduled run.
            problem = bucket_problem(parts.scheme, parts.netloc)
            if problem:
                raise ValueError(f"{kind} URL {shown!r}: invalid bucket name {parts.netloc!r}: {problem}")
        return v

    return check


NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

# An RFC 1123 label: what Kubernetes takes as a namespace's name. Here, not in the kube layer:
# runbooks and dr.yaml are checked with them without importing the Kubernetes client.
DNS_LABEL_MAX = 63
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def is_dns_label(name: str) -> bool:
    """Whether ``name`` may name a namespace (lower-case letters, digits, '-'; at most 63)."""
    return len(name) <= DNS_LABEL_MAX and _DNS_LABEL.fullmatch(name) is not None


DNS_SUBDOMAIN_MAX = 253


def is_dns_subdomain(name: str) -> bool:
    """Whether ``name`` may name a StorageClass (DNS labels joined by '.'; at most 253)."""
    return len(name) <= DNS_SUBDOMAIN_MAX and all(is_dns_label(part) for part in name.split("."))


NAME_MAX = 52


def _bool_as_text(v: Any) -> Any:
    return str(v).lower() if isinstance(v, bool) else v


# Field metadata: what the type alone cannot say.
NAME = {"pattern": NAME_PATTERN, "max_length": NAME_MAX}
CRON = {"check": check_cron}
DURATION = {"before": check_duration}
POSITIVE_DURATION = {"before": check_positive_duration}
TIME_ZONE = {"check": check_time_zone}
# A namespace name: an RFC 1123 label.
NAMESPACE = {"pattern": NAME_PATTERN, "max_length": 63}
QUANTITIES = {"check": check_quantities}
SIZE = {"check": check_size}


# --------------------------------------------------------------------------- the validator


def camel(name: str) -> str:
    """``snake_case`` -> ``camelCase`` (the YAML spelling of a field)."""
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


M = TypeVar("M")

_KIND = {str: "a string", int: "an integer", bool: "true or false"}


@dataclass(frozen=True)
class _Field:
    name: str
    alias: str
    type: Any
    meta: dict[str, Any]
    required: bool


@functools.cache
def _fields(cls: type) -> tuple[_Field, ...]:
    """A model's fields with their resolved types (once per class: resolving is slow)."""
    hints = typing.get_type_hints(cls)
    return tuple(
        _Field(
            f.name,
            camel(f.name),
            hints[f.name],
            dict(f.metadata),
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
    )


def _decode(tp: Any, value: Any, loc: tuple[Any, ...], out: list[Problem]) -> Any:
    """``value`` as type ``tp``, or ``_BAD`` with a problem added to ``out``."""
    origin = typing.get_origin(tp)
    if origin is types.UnionType or origin is typing.Union:  # only ``X | None`` is used
        (inner,) = [m for m in typing.get_args(tp) if m is not type(None)]
        return None if value is None else _decode(inner, value, loc, out)
    if origin is Literal:
        options = typing.get_args(tp)
        if value in options and not isinstance(value, bool):
            return value
        out.append((loc, f"expected one of {', '.join(repr(o) for o in options)}"))
        return _BAD
    if origin is list:
        if not isinstance(value, list):
            out.append((loc, "expected a list"))
            return _BAD
        (item,) = typing.get_args(tp)
        items = [_decode(item, v, (*loc, i), out) for i, v in enumerate(value)]
        return _BAD if any(i is _BAD for i in items) else items
    if origin is dict:
        if not isinstance(value, dict):
            out.append((loc, "expected a mapping"))
            return _BAD
        kt, vt = typing.get_args(tp)
        pairs = {_decode(kt, k, (*loc, k), out): _decode(vt, v, (*loc, k), out) for k, v in value.items()}
        return _BAD if any(k is _BAD or v is _BAD for k, v in pairs.items()) else pairs
    if dataclasses.is_dataclass(tp):
        return _decode_model(tp, value, loc, out)  # type: ignore[arg-type]
    if tp is timedelta:
        return _convert(check_duration, value, loc, out)
    if tp in _KIND:
        # bool is an int in Python, not in a document
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            out.append((loc, f"expected {_KIND[tp]}"))
            return _BAD
        return value
    raise TypeError(f"dr.config: no rule for type {tp!r}")


def _convert(fn: Callable[[Any], Any], value: Any, loc: tuple[Any, ...], out: list[Problem]) -> Any:
    try:
        return fn(value)
    except ValueError as e:
        out.append((loc, str(e)))
        return _BAD


def _decode_field(f: _Field, value: Any, loc: tuple[Any, ...], out: list[Problem]) -> Any:
    meta = f.meta
    if value is None:
        return _decode(f.type, value, loc, out)  # fine where the type allows None
    if "before" in meta:
        value = _convert(meta["before"], value, loc, out)
        if value is _BAD:
            return _BAD
    value = _decode(f.type, value, loc, out)
    if value is _BAD or value is None:
        return value
    if "ge" in meta and value < meta["ge"]:
        out.append((loc, f"must be at least {meta['ge']}"))
        return _BAD
    if "le" in meta and value > meta["le"]:
        out.append((loc, f"must be at most {meta['le']}"))
        return _BAD
    if "min_length" in meta and len(value) < meta["min_length"]:
        out.append((loc, f"needs at least {meta['min_length']} item(s)"))
        return _BAD
    if "max_length" in meta and len(value) > meta["max_length"]:
        out.append((loc, f"{value!r} is longer than {meta['max_length']} characters"))
        return _BAD
    if "pattern" in meta and not re.fullmatch(meta["pattern"], value):  # "$" alone passes "x\n"
        out.append((loc, f"{value!r} is not a valid name (lowercase letters, digits and '-')"))
        return _BAD
    if "check" in meta:
        return _convert(meta["check"], value, loc, out)
    return value


def _decode_model(cls: type[M], value: Any, loc: tuple[Any, ...], out: list[Problem]) -> Any:
    if not isinstance(value, dict):
        out.append((loc, "expected a mapping"))
        return _BAD
    fields = _fields(cls)  # type: ignore[arg-type]  # classes are hashable
    by_key = {f.alias: f for f in fields} | {f.name: f for f in fields}
    # Counted before the unknown fields: one of them alone makes the model invalid
    # (at the top level no enclosing model would notice it in ``out``).
    before = len(out)
    for key in value:
        if key not in by_key:
            out.append(((*loc, key), "unknown field"))
    kwargs: dict[str, Any] = {}
    for f in fields:
        key = f.alias if f.alias in value else f.name
        if key not in value:
            if f.required:
                out.append(((*loc, f.alias), "required field is missing"))
            continue
        kwargs[f.name] = _decode_field(f, value[key], (*loc, key), out)
    if len(out) > before or any(v is _BAD for v in kwargs.values()):
        return _BAD
    obj = cls(**kwargs)
    check = getattr(obj, "_check", None)
    if check is not None:
        try:
            check()
        except ValueError as e:
            out.append((loc, str(e)))
            return _BAD
    return obj


class _Bad:
    def __repr__(self) -> str:
        return "<invalid>"


_BAD: Any = _Bad()


def validate(cls: type[M], data: Any, lm: LineMap) -> M:
    """``data`` (parsed YAML/JSON) as model ``cls``; on failure raise one problem line per error."""
    located: list[Problem] = []
    obj: M = _decode_model(cls, data, (), located)
    if obj is _BAD:
        raise problems_error(lm, located)
    return checked_references(obj, lm)


def checked_references(obj: M, lm: LineMap) -> M:
    """``obj`` once its ``reference_problems`` (what spans fields: names that refer
    to each other), if it has any, are none; else the problems as ``InvalidInput``."""
    check = getattr(obj, "reference_problems", None)
    located = check() if check else []
    if located:
        raise problems_error(lm, located)
    return obj


def to_doc(obj: Any) -> Any:
    """A model as YAML/JSON data: camelCase keys, no None values, durations as ``90s``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            camel(f.name): to_doc(v)
            for f in dataclasses.fields(obj)
            if (v := getattr(obj, f.name)) is not None
        }
    if isinstance(obj, list):
        return [to_doc(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_doc(v) for k, v in obj.items()}
    if isinstance(obj, timedelta):
        return duration_text(obj)
    return obj


def duration_text(d: timedelta) -> str:
    """``timedelta`` -> the shortest exact form dr accepts back (``1d6h``, ``90s``, ``0.5s``)."""
    if d.microseconds:
        return f"{d.days * 86400 + d.seconds}.{d.microseconds:06d}".rstrip("0") + "s"
    left, parts = d.days * 86400 + d.seconds, []
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= n:
            parts.append(f"{left // n}{unit}")
            left %= n
    return "".join(parts) or "0s"


@dataclass(frozen=True)
class _PydanticBefore:
    """``Annotated`` metadata that gives pydantic the same conversion (pydantic is
    imported only when a pydantic model that embeds the field is built)."""

    fn: Callable[[Any], Any]

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_before_validator_function(self.fn, handler(source))


class _Converting:
    """Models built in code get the conversions a document gets (``deadline="1s"``,
    ``includeClusterResources: true``); pydantic, where it embeds a model, too."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            before = f.metadata.get("before")
            value = getattr(self, f.name)
            if before is not None and value is not None:
                setattr(self, f.name, before(value))


# Models that pydantic models embed (the runbook's scope, a Job's resources) are
# validated by pydantic there: the same spelling rules, told to pydantic.
_PYDANTIC_CONFIG = {
    "alias_generator": camel,
    "populate_by_name": True,
    "extra": "forbid",
    "use_attribute_docstrings": True,
}


# --------------------------------------------------------------------------- repositories


@dataclass
class ObjectLock:
    days: int = field(metadata={"ge": 1, "le": 36500})
    mode: Literal["GOVERNANCE", "COMPLIANCE"] = "COMPLIANCE"


@dataclass
class S3Options:
    endpoint: str | None = None
    region: str | None = None
    addressing_style: Literal["auto", "virtual", "path"] = "auto"
    object_lock: ObjectLock | None = None
    # S3 storage class for every object dr writes (e.g. STANDARD_IA); default: the bucket's.
    storage_class: str | None = None
    # Hash every upload into its SigV4 signature over plain HTTP too, for servers
    # that refuse UNSIGNED-PAYLOAD there. Default: a signed CRC32 header only.
    sign_payload: bool = False


@dataclass
class GCSOptions:
    project: str | None = None
    endpoint: str | None = None


@dataclass
class Repository:
    name: str = field(metadata=NAME)
    url: str = field(metadata={"check": scheme_checker("repository", REPOSITORY_SCHEMES)})
    s3: S3Options | None = None
    gcs: GCSOptions | None = None
    # Names of key providers whose slots should exist (the first is used to init).
    keys: list[str] = field(default_factory=list)

    def _check(self) -> None:
        scheme = urlsplit(self.url).scheme
        if self.s3 is not None and scheme != "s3":
            raise ValueError(f"s3 options given for a {scheme}:// repository")
        if self.gcs is not None and scheme != "gs":
            raise ValueError(f"gcs options given for a {scheme}:// repository")


# --------------------------------------------------------------------------- key providers


DEFAULT_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"


@dataclass
class VaultAuth:
    method: Literal["token", "approle", "kubernetes"] = "token"
    # approle: file paths (mounted Secrets), never inline secrets.
    role_id_file: str | None = None
    secret_id_file: str | None = None
    mount: str | None = None
    # kubernetes: Vault role; the pod's service-account token is read from
    # tokenPath (default DEFAULT_TOKEN_PATH). token: when tokenPath is set, the
    # Vault token is read from it (e.g. a Vault Agent sink); otherwise
    # VAULT_TOKEN, then ~/.vault-token.
    role: str | None = None
    token_path: str | None = None

    def _check(self) -> None:
        if self.method == "approle" and not (self.role_id_file and self.secret_id_file):
            raise ValueError("approle auth needs roleIdFile and secretIdFile")
        if self.method == "kubernetes" and not self.role:
            raise ValueError("kubernetes auth needs role")


@dataclass
class VaultOptions:
    address: str | None = None  # default: $VAULT_ADDR
    namespace: str | None = None
    ca_cert: str | None = None
    auth: VaultAuth = field(default_factory=VaultAuth)


@dataclass
class AWSKMSOptions:
    region: str | None = None
    endpoint: str | None = None


@dataclass
class GCPKMSOptions:
    endpoint: str | None = None


@dataclass
class KeyProvider:
    name: str = field(metadata=NAME)
    uri: str = field(metadata={"check": scheme_checker("key provider", KEY_PROVIDER_SCHEMES)})
    vault: VaultOptions | None = None
    awskms: AWSKMSOptions | None = None
    gcpkms: GCPKMSOptions | None = None

    def _check(self) -> None:
        scheme = urlsplit(self.uri).scheme
        for opt in ("vault", "awskms", "gcpkms"):
            if getattr(self, opt) is not None and scheme != opt:
                raise ValueError(f"{opt} options given for a {scheme}:// key provider")


# --------------------------------------------------------------------------- policies


@dataclass
class Scope(_Converting):
    __pydantic_config__ = _PYDANTIC_CONFIG

    namespaces: list[str] = field(default_factory=list)
    """names or globs"""
    selector: str | None = None
    include_resources: list[str] = field(default_factory=list)
    exclude_resources: list[str] = field(default_factory=list)
    # true/false in YAML mean "true"/"false"
    include_cluster_resources: Annotated[Literal["auto", "true", "false"], _PydanticBefore(_bool_as_text)] = (
        field(default="auto", metadata={"before": _bool_as_text})
    )


@dataclass
class Retention:
    keep_last: int | None = field(default=None, metadata={"ge": 0})
    keep_hourly: int | None = field(default=None, metadata={"ge": 0})
    keep_daily: int | None = field(default=None, metadata={"ge": 0})
    keep_weekly: int | None = field(default=None, metadata={"ge": 0})
    keep_monthly: int | None = field(default=None, metadata={"ge": 0})
    keep_yearly: int | None = field(default=None, metadata={"ge": 0})
    # Every backup at most this long before the newest (restic's --keep-within).
    keep_within: timedelta | None = field(default=None, metadata=POSITIVE_DURATION)


@dataclass
class Hook(_Converting):
    command: list[str] = field(metadata={"min_length": 1})
    name: str | None = None
    container: str | None = None
    timeout: timedelta = field(default=timedelta(seconds=30), metadata=POSITIVE_DURATION)
    on_error: Literal["fail", "continue"] = "fail"


@dataclass
class PodHooks:
    """Hooks for the pods that ``selector`` picks in the backed-up namespaces."""

    selector: str | None = None
    pre: list[Hook] = field(default_factory=list)
    post: list[Hook] = field(default_factory=list)


@dataclass
class VolumeOptions(_Converting):
    mode: Literal["auto", "snapshot", "filesystem", "none"] = "auto"
    snapshot_class: str | None = None
    snapshot_timeout: timedelta = field(default=timedelta(minutes=10), metadata=POSITIVE_DURATION)


@dataclass
class BackupPolicy(_Converting):
    name: str = field(metadata=NAME)
    schedule: str = field(metadata=CRON)
    repository: str | None = None
    time_zone: str | None = field(default=None, metadata=TIME_ZONE)
    scope: Scope = field(default_factory=Scope)
    volumes: VolumeOptions = field(default_factory=VolumeOptions)
    hooks: list[PodHooks] = field(default_factory=list)
    retention: Retention = field(default_factory=Retention)
    rpo: timedelta | None = field(default=None, metadata=POSITIVE_DURATION)
    # dr.tags: the rule of --tag, as these are passed on to each mover Job's --tag.
    tags: dict[str, str] = field(default_factory=dict, metadata={"check": check_tags})


@dataclass
class DrillPolicy:
    name: str = field(metadata=NAME)
    runbook: str
    schedule: str = field(metadata=CRON)
    time_zone: str | None = field(default=None, metadata=TIME_ZONE)
    repository: str | None = None
    backup_policy: str | None = None


def _default_requests() -> dict[str, str]:
    return {"cpu": "250m", "memory": "256Mi"}


def _default_limits() -> dict[str, str]:
    return {"memory": "1Gi"}


@dataclass
class Resources:
    __pydantic_config__ = _PYDANTIC_CONFIG

    requests: dict[str, str] = field(default_factory=_default_requests, metadata=QUANTITIES)
    limits: dict[str, str] = field(default_factory=_default_limits, metadata=QUANTITIES)


# The /tmp emptyDir's limit in dr's pods (the kubelet evicts a pod whose /tmp grows past
# it): ``mover.tmpSizeLimit``. What fills it is the repository index (dr.repo.index):
# ~220 bytes a blob while it loads, ~165 once loaded. 4Gi: ~19 million blobs (19 TiB in
# 1 MiB chunks, or as many small files); 1Gi was ~4.8 million, fewer than the in-memory
# index once fitted in a mover's 1Gi of memory.
TMP_SIZE_LIMIT = "4Gi"


@dataclass
class MoverOptions(_Converting):
    image: str = "ghcr.io/dr-project/dr:latest"
    namespace: str = field(default="dr-system", metadata=NAMESPACE)
    parallelism: int = field(default=2, metadata={"ge": 1, "le": 64})
    deadline: timedelta = field(default=timedelta(hours=6), metadata=POSITIVE_DURATION)
    resources: Resources = field(default_factory=Resources)
    # Secret holding the repository credentials, mounted/env'd into mover pods.
    credentials_secret: str | None = None
    # The size of /tmp (an emptyDir) in every dr pod: mover Jobs, probe Jobs and CronJobs.
    tmp_size_limit: str = field(default=TMP_SIZE_LIMIT, metadata=SIZE)


@dataclass
class Metrics:
    pushgateway: str | None = None
    textfile: str | None = None


@dataclass
class Config:
    api_version: Literal["dr.dev/v1"] = "dr.dev/v1"
    kind: Literal["Config"] = "Config"
    default_repository: str | None = None
    repositories: list[Repository] = field(default_factory=list)
    key_providers: list[KeyProvider] = field(default_factory=list)
    backup_policies: list[BackupPolicy] = field(default_factory=list)
    drill_policies: list[DrillPolicy] = field(default_factory=list)
    mover: MoverOptions = field(default_factory=MoverOptions)
    metrics: Metrics = field(default_factory=Metrics)
    kube_context: str | None = None

    def reference_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Cross-references the field types cannot see: (field path, reason) for each problem."""
        problems: list[tuple[tuple[str | int, ...], str]] = []

        def unique(items: list[Any], section: str) -> set[str]:
            names: set[str] = set()
            for i, it in enumerate(items):
                if it.name in names:
                    problems.append(((section, i, "name"), f"duplicate name {it.name!r}"))
                names.add(it.name)
            return names

        repos = unique(self.repositories, "repositories")
        keys = unique(self.key_providers, "keyProviders")
        backups = unique(self.backup_policies, "backupPolicies")
        unique(self.drill_policies, "drillPolicies")
        if self.default_repository and self.default_repository not in repos:
            problems.append((("defaultRepository",), f"{self.default_repository!r} is not a repository name"))
        for i, r in enumerate(self.repositories):
            for j, k in enumerate(r.keys):
                if k not in keys:
                    problems.append((("repositories", i, "keys", j), f"key provider {k!r} is not defined"))
        for i, p in enumerate(self.backup_policies):
            if p.repository and p.repository not in repos:
                problems.append(
                    (("backupPolicies", i, "repository"), f"repository {p.repository!r} is not defined")
                )
        for i, d in enumerate(self.drill_policies):
            if d.repository and d.repository not in repos:
                problems.append(
                    (("drillPolicies", i, "repository"), f"repository {d.repository!r} is not defined")
                )
            if d.backup_policy and d.backup_policy not in backups:
                problems.append(
                    (
                        ("drillPolicies", i, "backupPolicy"),
                        f"backup policy {d.backup_policy!r} is not defined",
                    )
                )
        return problems

    def schedule_warnings(self, now: datetime) -> list[str]:
        """What the policies' schedules do on the days their time zone changes its clocks
        (``dr.cron.dst_effects``): legal, and easily missed — a nightly backup at 02:30
        Europe/Berlin has no run on the spring-forward day. For ``dr config validate`` and
        ``dr deploy render``; warnings, not problems."""
        from zoneinfo import ZoneInfo

        out = []
        policies: list[tuple[str, BackupPolicy | DrillPolicy]] = [
            *(("backup policy", p) for p in self.backup_policies),
            *(("drill policy", d) for d in self.drill_policies),
        ]
        for what, p in policies:
            if not p.time_zone:
                continue  # UTC (the rendered CronJob's Etc/UTC) never changes its clocks
            for e in dst_effects(parse_cron(p.schedule), ZoneInfo(p.time_zone), now):
                at, many = ", ".join(e.times), len(e.times) > 1
                them = ("those times", "them") if many else ("that time", "it")
                if e.kind == "skipped":
                    effect = f"skips its run{'s' if many else ''} at {at} on the day the clocks go forward"
                    why = f"{'do' if many else 'does'} not exist, and the CronJob controller does not run {them[1]}"
                    hour = (e.clock_from, e.clock_to)
                else:
                    effect = f"runs twice at {at} on the day the clocks go back"
                    why = f"come{'' if many else 's'} twice, and the CronJob controller runs {them[1]} both times"
                    hour = (e.clock_to, e.clock_from)
                out.append(
                    f"{what} {p.name}: schedule {p.schedule!r} ({p.time_zone}) {effect} from {e.clock_from} to "
                    f"{e.clock_to} (next {e.day}): {them[0]} {why}; choose a time outside {hour[0]}-{hour[1]}"
                )
        return out

    # -- lookups used by the commands

    def repository(self, name: str | None = None) -> Repository | None:
        want = name or self.default_repository
        if want is None:
            return self.repositories[0] if self.repositories else None
        return next((r for r in self.repositories if r.name == want), None)

    def backup_policy(self, name: str | None) -> BackupPolicy | None:
        return next((p for p in self.backup_policies if p.name == name), None) if name else None

    def backup_repository(self, policy: str | None) -> str | None:
        """The repository (name) backup policy ``policy`` backs up into, if it names one."""
        backups = self.backup_policy(policy)
        return backups.repository if backups else None

    def drill_repository(self, drill: DrillPolicy | None, runbook_policy: str | None = None) -> str | None:
        """The repository (name) an app's drills read backups from and write reports to: the
        drill policy's own, else its backup policy's (where those backups are), else that of
        the runbook's backup policy ``runbook_policy``, else None (the default)."""
        if drill is not None:
            if drill.repository:
                return drill.repository
            if repository := self.backup_repository(drill.backup_policy):
                return repository
        return self.backup_repository(runbook_policy)

    def key_provider(self, name: str) -> KeyProvider | None:
        return next((k for k in self.key_providers if k.name == name), None)


def load_config_file(path: Path) -> Config:
    """Read, parse and validate a dr.yaml (errors name file:line:col)."""
    data, lm = read_yaml_file(path)
    return validate(Config, data, lm)


# --------------------------------------------------------------------------- defaults and resolution


def xdg_data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def xdg_config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def default_config() -> Config:
    """Embedded defaults: a file repository and a local key under the XDG directories."""
    repo_dir = xdg_data_home() / "dr" / "repo"
    key_file = xdg_config_home() / "dr" / "repo.key"
    return Config(
        default_repository="default",
        repositories=[Repository(name="default", url=f"file://{repo_dir}", keys=["local"])],
        key_providers=[KeyProvider(name="local", uri=f"local://{key_file}")],
    )


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    source: str  # a path, or "built-in defaults"

    @property
    def config_dir(self) -> Path | None:
        """The directory of the config file (drill policies' runbooks are relative to it), None for the defaults."""
        return Path(self.source).parent if self.source != "built-in defaults" else None


def resolve_config_path(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    env = os.environ.get("DR_CONFIG")
    if env:
        return Path(env)
    local = Path("dr.yaml")
    return local if local.exists() else None


def load_config(explicit: str | None = None) -> LoadedConfig:
    path = resolve_config_path(explicit)
    if path is None:
        return LoadedConfig(default_config(), "built-in defaults")
    return LoadedConfig(load_config_file(path), str(path))
