"""Kubernetes label selectors: parse the text form, match labels client-side.

Backup sends the selector to the API server (after checking it here, so a typo
is one clear line instead of a 400 per resource type); restore matches the
backed-up objects' labels with the same semantics: ``k=v``, ``k==v``, ``k!=v``,
``k in (a,b)``, ``k notin (a,b)``, ``k`` (exists), ``!k`` (does not exist),
requirements joined by commas (all must hold). ``!=`` and ``notin`` also match
objects without the key, as in Kubernetes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from dr.errors import InvalidInput

# A label key is [PREFIX/]NAME (also the rule of a tag's key, dr.tags): NAME at most 63
# characters, alphanumeric at both ends; PREFIX a DNS subdomain (its length checked apart).
LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
LABEL_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
KEY_RE = re.compile(rf"^({LABEL_PREFIX}/)?{LABEL_NAME}$")
VALUE_RE = re.compile(rf"^({LABEL_NAME})?$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values  # "!=", "notin"

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return f"!{self.key}"
        if self.op in ("=", "!="):
            return f"{self.key}{self.op}{next(iter(self.values))}"
        return f"{self.key} {self.op} ({','.join(sorted(self.values))})"


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        lab = labels or {}
        return all(r.matches(lab) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __bool__(self) -> bool:
        return bool(self.requirements)


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced ')'")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise ValueError("unbalanced '('")
    parts.append("".join(cur))
    return parts


_SET_RE = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EQ_RE = re.compile(r"^(?P<key>[^=!\s]+)\s*(?P<op>==|=|!=)\s*(?P<value>\S*)$")


def _check_key(key: str) -> str:
    if not KEY_RE.match(key) or len(key.split("/")[0]) > 253:
        raise ValueError(f"invalid label key {key!r}")
    return key


def _check_value(value: str) -> str:
    if not VALUE_RE.match(value):
        raise ValueError(f"invalid label value {value!r}")
    return value


def _parse_requirement(part: str) -> Requirement:
    part = part.strip()
    if not part:
        raise ValueError("empty requirement")
    if m := _SET_RE.match(part):
        values = [_check_value(v.strip()) for v in m["values"].split(",")]
        return Requirement(_check_key(m["key"]), m["op"], frozenset(values))
    if m := _EQ_RE.match(part):
        op = "=" if m["op"] in ("=", "==") else "!="
        return Requirement(_check_key(m["key"]), op, frozenset({_check_value(m["value"])}))
    if part.startswith("!"):
        return Requirement(_check_key(part[1:].strip()), "!")
    return Requirement(_check_key(part), "exists")


def parse_selector(text: str | None) -> LabelSelector:
    """Parse a label selector; ``InvalidInput`` naming the selector and the problem."""
    if text is None or not text.strip():
        return LabelSelector()
    try:
        return LabelSelector(tuple(_parse_requirement(p) for p in _split_top_level(text)))
    except ValueError as e:
        raise InvalidInput(f"label selector {text!r}: {e}") from None
