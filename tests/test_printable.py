"""dr.printable: names from volumes and key slots, escaped for a terminal line the same way
by ``dr mover ls`` and the key slot listings (``dr.crypto.keyring.shown``)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dr.crypto.keyring import shown
from dr.printable import BIDI_CONTROLS, printable


def _unsafe(c: str) -> bool:
    """A character a terminal acts on, that reorders the text shown, breaks a line or
    cannot be written as UTF-8."""
    return unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in BIDI_CONTROLS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("new\nline", "new\\x0aline"),
        ("red\x1b[31mtext", "red\\x1b[31mtext"),
        ("tab\there\r", "tab\\x09here\\x0d"),
        ("del\x7f c1\x85\x9b", "del\\x7f c1\\x85\\x9b"),
        # Trojan Source: an override makes "invoice_\u202etxt.exe" display as "invoice_exe.txt".
        ("invoice_\u202etxt.exe", "invoice_\\u202etxt.exe"),
        ("\u2066a\u2069 \u200e\u200f\u061c", "\\u2066a\\u2069 \\u200e\\u200f\\u061c"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("caf" + b"\xe9".decode("utf-8", "surrogateescape"), "caf\\udce9"),
        # Ordinary names in any script, with spaces, joiners and backslashes: unchanged.
        ("café données 数据 данные", "café données 数据 данные"),
        ("\u05e9\u05dc\u05d5\u05dd.txt", "\u05e9\u05dc\u05d5\u05dd.txt"),  # Hebrew: right-to-left by itself
        ("👩\u200d💻 nbsp\u00a0x", "👩\u200d💻 nbsp\u00a0x"),
        ("sub/caf\\xe9", "sub/caf\\xe9"),
    ],
)
def test_printable(text: str, expected: str) -> None:
    assert printable(text) == expected


@given(st.text(st.characters(codec=None)))
def test_printable_output_has_no_control_or_bidi_character(text: str) -> None:
    out = printable(text)
    assert not any(_unsafe(c) for c in out), ascii(out)
    out.encode("utf-8")


@given(st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"), exclude_characters=BIDI_CONTROLS)))
def test_printable_keeps_text_without_them(text: str) -> None:
    assert printable(text) == text


@given(st.text())
def test_key_slots_escape_as_mover_ls_does_and_strictly(text: str) -> None:
    # They once differed: key slots wrote a newline as \n where mover ls wrote \x0a
    # (tests/test_cli_repo.py has mover ls's bidi case). Slots escape strictly.
    assert shown(text, limit=10**6) == printable(text, strict=True)


@given(st.text(st.characters(codec=None)))
def test_strict_output_is_all_printable_and_keeps_printable_text(text: str) -> None:
    out = printable(text, strict=True)
    assert out.isprintable(), ascii(out)
    if text.isprintable() and not any(_unsafe(c) for c in text):
        assert out == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A zero-width space, a word joiner, a BOM, a tag character, private use, a no-break space.
        ("vault://transit/keys/d\u200br", "vault://transit/keys/d\\u200br"),
        ("local:///k\u2060.key\ufeff", "local:///k\\u2060.key\\ufeff"),
        ("a\U000e0041\ue000\u00a0b", "a\\U000e0041\\ue000\\xa0b"),
        ("awskms://alias/dr-key", "awskms://alias/dr-key"),
    ],
)
def test_key_slot_uris_show_invisible_characters_escaped(text: str, expected: str) -> None:
    assert shown(text) == expected
