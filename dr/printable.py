"""Text that dr did not write, made safe to print on a terminal line: ``printable(text)``.

Names from a volume (``dr mover ls``) and provider URIs from key slots (slots are
unauthenticated) are anyone's. Printed as they are, a control character acts
instead of showing (a newline forges a line of its own, an escape sequence
drives the terminal) and a Unicode bidirectional control reorders what follows
it, so that a name displays as another one ("Trojan Source", CVE-2021-42574).

Escaped, each as ``\\xNN`` (below U+0100) or ``\\uNNNN``, one notation for every
caller:

- C0 controls, DEL and C1 controls (Unicode category Cc);
- the bidi controls: embeddings, overrides and their pop (U+202A-U+202E),
  isolates (U+2066-U+2069) and the implicit marks (U+200E, U+200F, U+061C);
- the line and paragraph separators (U+2028, U+2029), which some viewers break
  a line at;
- lone surrogates (what ``surrogateescape`` makes of bytes that are not UTF-8),
  which a UTF-8 stream cannot write at all.

Everything else is kept, on purpose: letters of every script, non-breaking
spaces and the joiners of emoji and of Arabic or Indic names are parts of
ordinary names, and escaping them would make those names unreadable. A
backslash is kept too: ``dr mover ls`` already shows a byte that is not UTF-8 as
the text ``\\xNN``. Kept at the bottom layer (no imports from dr) so that the
crypto layer and the CLI use the same function.
"""

from __future__ import annotations

import re

BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

_ESCAPED = re.compile("[\x00-\x1f\x7f-\x9f" + BIDI_CONTROLS + "\u2028\u2029\ud800-\udfff]")


def _escape_code(code: int) -> str:
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _escape(m: re.Match[str]) -> str:
    return _escape_code(ord(m.group()))


def printable(text: str, *, strict: bool = False) -> str:
    """``text`` with the characters above as escapes; any other text unchanged.

    ``strict``: every character Python does not call printable is escaped as well
    (format characters such as zero-width spaces and joiners, private-use and
    unassigned code points, spaces other than U+0020): for text that is no one's
    name but must be told apart at a glance, such as a key slot's provider URI,
    where a zero-width character would let a planted slot look like the real one."""
    out = _ESCAPED.sub(_escape, text)
    if strict and not out.isprintable():
        out = "".join(c if c.isprintable() else _escape_code(ord(c)) for c in out)
    return out
