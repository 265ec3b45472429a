"""Namespace names and globs: whether a pattern (``team-*``, ``app-?``) can match a namespace at all.

Pure string checks, kept apart from ``dr.backup.scope`` (which imports the Kubernetes
client) so that validating a runbook or a config does not load the client.
"""

from __future__ import annotations

import fnmatch

from dr.config import is_dns_label

GLOB_CHARS = frozenset("*?[")


def is_glob(pattern: str) -> bool:
    return any(c in GLOB_CHARS for c in pattern)


NAME_RULE = "a-z, 0-9 and '-', a letter or digit at each end, at most 63 characters"
# The characters of a namespace name (an RFC 1123 label), letters and digits first.
_LABEL_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-"


def namespace_pattern_problem(pattern: str) -> str | None:
    """Why no namespace can match ``pattern`` (a name, or a glob as ``match_namespaces``
    reads it with fnmatch), None when one can."""
    if not is_glob(pattern):
        return None if is_dns_label(pattern) else f"{pattern!r} is not a namespace name ({NAME_RULE})"
    tokens = _glob_tokens(pattern)
    if tokens is None:
        return f"glob {pattern!r}: a '[' without its ']' matches only a '[', which no namespace name holds"
    if not _matches_a_name(tokens):
        return f"glob {pattern!r} matches no namespace name ({NAME_RULE})"
    return None


def _glob_tokens(pattern: str) -> list[str | None] | None:
    """``pattern`` as fnmatch reads it, one item a pattern character: None for ``*``, else the
    characters of a namespace name that it matches there ("" for none); None for a ``[``
    without its ``]`` (fnmatch takes it for the character '[')."""
    tokens: list[str | None] = []
    i, n = 0, len(pattern)
    while i < n:
        c, i = pattern[i], i + 1
        if c == "*":
            tokens.append(None)
        elif c == "?":
            tokens.append(_LABEL_CHARS)
        elif c == "[":
            # Where the set ends, as fnmatch.translate finds it: a leading '!' and ']' are in it.
            j = i + (i < n and pattern[i] == "!")
            j += j < n and pattern[j] == "]"
            j = pattern.find("]", j)
            if j < 0:
                return None
            bracket = pattern[i - 1 : j + 1]
            tokens.append("".join(ch for ch in _LABEL_CHARS if fnmatch.fnmatchcase(ch, bracket)))
            i = j + 1
        else:
            tokens.append(c if c in _LABEL_CHARS else "")
    return tokens


def _matches_a_name(tokens: list[str | None]) -> bool:
    """Whether some namespace name matches the glob of ``tokens`` (``_glob_tokens``).

    The shortest candidates are enough: each character where a letter or digit can
    stand gets one (valid at either end, '-' only inside), every ``*`` nothing, except
    that the first and the last may give one letter (``*-db`` matches ``a-db``)."""
    if any(t == "" for t in tokens):
        return False
    stars = [k for k, t in enumerate(tokens) if t is None]
    for first in ("", "a"):
        for last in ("", "a"):
            name = ""
            for k, t in enumerate(tokens):
                if t is None:
                    name += first if k == stars[0] else last if k == stars[-1] else ""
                else:
                    name += t[0]  # a letter or digit when it may be one: they come first
            if is_dns_label(name):
                return True
    return False
