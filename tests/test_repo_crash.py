"""Crash safety: kill a real `dr mover backup` at several points (FORMAT.md §7, §8).

After each kill: no snapshot is visible, the repository checks clean, the
next backup succeeds and reuses what was already uploaded and indexed, and
prune removes the leftovers of the killed run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import DR, run_dr_process
from tests.repo_helpers import describe_tree

pytestmark = pytest.mark.slow


def _dataset(root: Path, files: int = 24, size: int = 6 << 20) -> None:
    rng = random.Random(7)
    root.mkdir()
    for i in range(files):
        (root / f"f{i:02d}.bin").write_bytes(rng.randbytes(size))


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "DR_CONFIG": "",
        "DR_REPO": f"file://{tmp_path}/repo",
    }


def _count(path: Path, sub: str) -> int:
    d = path / sub
    return sum(len(files) for _, _, files in os.walk(d)) if d.exists() else 0


@pytest.mark.parametrize("kill_after_packs", [0, 2, 6])
def test_killed_backup_leaves_consistent_repository(tmp_path: Path, kill_after_packs: int) -> None:
    env = _env(tmp_path)
    src = tmp_path / "src"
    _dataset(src)
    repo = tmp_path / "repo"
    assert run_dr_process("repo", "init", env=env).code == 0

    proc = subprocess.Popen([DR, "mover", "backup", str(src), "-o", "json"], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 60
    while _count(repo, "data") < kill_after_packs and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the backup finished before it could be killed"
    assert _count(repo, "snapshots") == 0, "a killed backup must not leave a snapshot"

    check = run_dr_process("repo", "check", "-o", "json", env=env)
    assert check.code == 0, check.err
    assert json.loads(check.out)["errors"] == []

    # The next backup succeeds and re-uploads only what was not indexed yet.
    indexed_before = _count(repo, "index")
    done = run_dr_process("mover", "backup", str(src), "-o", "json", env=env)
    assert done.code == 0, done.err
    summary = json.loads(done.out)
    total = sum(f.stat().st_size for f in src.iterdir())
    if indexed_before:
        assert summary["newBytes"] < total, "packs indexed before the crash must be reused"
    assert summary["files"] == 24

    # Leftovers (unindexed packs of the killed run) go with prune; data stays intact.
    pruned = run_dr_process("prune", "-o", "json", env=env)
    assert pruned.code == 0, pruned.err
    check = run_dr_process("repo", "check", "--read-data", "-o", "json", env=env)
    assert check.code == 0, check.err
    report = json.loads(check.out)
    assert report["errors"] == [] and report["warnings"] == []
    out = tmp_path / "out"
    restored = run_dr_process("mover", "restore", summary["id"], str(out), env=env)
    assert restored.code == 0, restored.err
    assert describe_tree(out) == describe_tree(src)


# A `dr` that stops itself (SIGSTOP) before its first index file, with locks that
# lapse after 2 s (not 30 min): a backup paused past its lock's expiry.
_PAUSED_DR = """
import os, signal, sys
from datetime import timedelta
from dr.repo import locks, pack_writer
locks.Lock.__init__.__kwdefaults__["expiry"] = timedelta(seconds=2)
real = pack_writer.PackUploader._write_index
def paused(self, packs):
    os.kill(os.getpid(), signal.SIGSTOP)
    return real(self, packs)
pack_writer.PackUploader._write_index = paused
from dr.cli.entry import main
sys.argv[0] = "dr"
main()
"""


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def test_a_backup_paused_past_its_lock_expiry_commits_nothing(tmp_path: Path) -> None:
    import sys

    env = _env(tmp_path)
    src = tmp_path / "src"
    _dataset(src, files=4, size=1 << 20)
    repo = tmp_path / "repo"
    assert run_dr_process("repo", "init", env=env).code == 0
    proc = subprocess.Popen([sys.executable, "-c", _PAUSED_DR, "mover", "backup", str(src)],
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not _stopped(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _stopped(proc.pid), "the backup did not reach its first index file"
        time.sleep(2.5)  # its lock is stale now: a prune removes it and the unindexed packs
        pruned = run_dr_process("prune", "-o", "json", env=env)
        assert pruned.code == 0, pruned.err
        assert json.loads(pruned.out)["packsDeleted"] >= 1
    finally:
        proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, (out, err)
    assert "the repository lock of this backup was lost" in err and "Traceback" not in err
    assert _count(repo, "snapshots") == 0 and _count(repo, "index") == 0
    check = run_dr_process("repo", "check", "-o", "json", env=env)
    assert check.code == 0 and json.loads(check.out)["errors"] == [], check.out + check.err
    # The next backup stores everything again (what the paused one uploaded was pruned) and reads back.
    again = run_dr_process("mover", "backup", str(src), "-o", "json", env=env)
    assert again.code == 0, again.err
    summary = json.loads(again.out)
    assert summary["files"] == 4 and summary["newBytes"] >= 4 << 20, summary
    assert _count(repo, "snapshots") == 1
    check = run_dr_process("repo", "check", "--read-data", "-o", "json", env=env)
    assert check.code == 0 and json.loads(check.out)["errors"] == [], check.out + check.err
