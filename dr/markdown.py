"""Markdown that shows text as exactly that text: for the drill report and the runbook,
whose text comes from drill reports and runbooks (names, messages, errors — anything)."""

from __future__ import annotations

import re

from dr.printable import printable

# Markdown's inline markup (code, emphasis, links and images, strikethrough, math, table cells,
# a heading's closing '#'): backslash-escaped, which CommonMark and GFM read as the character.
# An underscore between letters or digits (pg_restore, kube_system) never is: left as it is.
_MD_PUNCTUATION = re.compile(r"[\\`*_\[\]~|$#]")
_MD_ORDERED_LIST = re.compile(r"\d+(?=[.)])")


def _printable(text: str) -> str:
    """Control characters but a tab (terminal escapes, a C1 CSI, a bidi override) as escapes
    (``\\x1b``, ``dr.printable``): the Markdown is printed to terminals (``dr report drills``),
    where they acted. Not strictly: a no-break space, a zero-width (non-)joiner or a soft hyphen
    is how a name or a sentence is written (French typography, Persian names, emoji sequences),
    harmless on a terminal, and shown as it is, as the HTML report shows it."""
    return "\t".join(printable(part) for part in text.split("\t"))


def _md_escape(m: re.Match[str]) -> str:
    i, text = m.start(), m.string
    if m.group() == "_" and 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum():
        return "_"
    return "\\" + m.group()


def md_text(text: str) -> str:
    """``text`` (from drill reports: names, messages, errors — anything) as inert Markdown text.

    One line (a line break would end a table row or a list item), no leading blanks (an
    indented code block), ``<``, ``>`` and ``&`` as HTML entities (no tag, autolink, quote or
    entity of its own: the one escape every Markdown renderer knows), markup characters
    backslash-escaped, and what would start a block at the start of a list item (``-``, ``+``,
    ``=``, ``1.``) escaped, control characters as escapes (``\\x1b``). It then reads (and
    renders) as exactly the text it was.
    """
    text = _printable(" ".join(text.splitlines()).strip())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_PUNCTUATION.sub(_md_escape, text)
    if m := _MD_ORDERED_LIST.match(text):
        return text[: m.end()] + "\\" + text[m.end() :]
    return "\\" + text if text[:1] in ("-", "+", "=") else text


def md_code(text: str) -> str:
    """``text`` as an inline code span: fenced by more backticks than it holds in a row, padded
    when it starts or ends with one (a code span shows its text as it is; no escape works inside)."""
    text = _printable(" ".join(text.splitlines()))
    if not text.strip():  # no code span shows only blanks as they are
        return md_text(text)
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text[:1] in ("`", " ") or text[-1:] in ("`", " ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
