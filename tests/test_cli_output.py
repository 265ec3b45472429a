"""Tables of ``dr.cli.output.emit`` as a terminal shows them."""

from __future__ import annotations

import io
import re
import sys

import pytest

from dr.cli.output import Column, emit


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_table_on_a_narrow_terminal_wraps_long_cells_instead_of_cutting_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `dr key list` on an 80-column terminal showed "local:///tmp/h2try/…" and "2026-11-30T07:48:07…":
    # which key file a slot is wrapped by, and when it was made, were cut off.
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("NO_COLOR", "1")
    out = Terminal()
    monkeypatch.setattr(sys, "stdout", out)
    provider = "local:///etc/dr/keys/break-glass/offline-copy-in-the-safe/repo.key"
    rows = [{"id": "2f16625d", "provider": provider, "created": "2026-11-30T07:48:07.738685Z", "used": "*"}]
    columns = [Column("SLOT", "id"), Column("PROVIDER", "provider"), Column("KEY VERSION", "id"),
               Column("CREATED", "created"), Column("OPENED WITH", "used")]  # fmt: skip
    emit(rows, "table", columns=columns)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())  # the header's bold
    assert "…" not in text, text
    assert all(len(line) <= 80 for line in text.splitlines()), text
    # Each value whole, read down its column.
    header, *body = text.splitlines()

    def column(name: str, following: str) -> str:
        start, end = header.index(name), header.index(following)
        return "".join(line[start:end].strip() for line in body)

    assert column("PROVIDER", "KEY VERSION") == provider, text
    assert column("CREATED", "OPENED WITH") == "2026-11-30T07:48:07.738685Z", text
