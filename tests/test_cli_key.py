"""`dr key list | add | remove | rotate` with local key files (other providers: test_key_providers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_dr


def test_key_slot_lifecycle(isolated_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    glass = isolated_home / "safe" / "break-glass.key"
    r = run_dr(capsys, "key", "add", f"local://{glass}", "-o", "json")
    assert r.code == 0, r.err
    assert glass.stat().st_mode & 0o777 == 0o600
    r = run_dr(capsys, "key", "add", f"local://{glass}")
    assert r.code == 1 and "already exists" in r.err

    slots = run_dr(capsys, "key", "list", "-o", "json").json()
    assert [s["provider"] for s in slots] == [
        f"local://{isolated_home}/config/dr/repo.key",
        f"local://{glass}",
    ]

    # The break-glass key alone opens the repository.
    (isolated_home / "config" / "dr" / "repo.key").rename(isolated_home / "lost.key")
    r = run_dr(capsys, "key", "list", "-o", "json")
    assert r.code == 0 and [s["usedToOpen"] for s in r.json()] == [False, True]

    r = run_dr(capsys, "key", "rotate", "-o", "json")
    assert r.code == 3, "the lost key cannot be rewrapped"
    assert "lost" not in r.err and "key file does not exist" in r.err
    (isolated_home / "lost.key").rename(isolated_home / "config" / "dr" / "repo.key")
    r = run_dr(capsys, "key", "rotate", "-o", "json")
    assert r.code == 0 and len(r.json()["rotated"]) == 2
    after = run_dr(capsys, "key", "list", "-o", "json").json()
    assert {s["id"] for s in after}.isdisjoint({s["id"] for s in slots})

    r = run_dr(capsys, "key", "remove", after[0]["id"][:8])
    assert r.code == 0
    r = run_dr(capsys, "key", "remove", after[1]["id"])
    assert r.code == 1 and "last key slot" in r.err
    r = run_dr(capsys, "key", "remove", "ffff")
    assert r.code == 1 and "no key slot 'ffff'" in r.err


def test_open_lists_each_provider_tried(isolated_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    assert run_dr(capsys, "key", "add", f"local://{isolated_home}/second.key").code == 0
    (isolated_home / "config" / "dr" / "repo.key").write_text("AAAA\n")
    (isolated_home / "second.key").chmod(0o644)
    r = run_dr(capsys, "repo", "info")
    assert r.code == 1
    lines = [ln.strip() for ln in r.err.splitlines()]
    assert lines[0] == "error: cannot open repository: none of 2 key slot(s) could be unwrapped"
    assert "repo.key: key file holds 3 bytes, expected 32" in lines[1]
    assert "second.key: key file is accessible by group or others (mode 0644)" in lines[2]
