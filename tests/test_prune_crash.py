"""Crash safety of maintenance: kill a real `dr prune` or `dr forget` (SIGKILL) at chosen
points, against file:// and SeaweedFS (S3).

The process kills itself just before its N-th store write of a kind
(``DR_TEST_KILL_BEFORE``, dr.storage.kill_switch): the same point on every run and
backend, not a race against a timer. After each kill, every snapshot that existed
before the command restores byte for byte, check and verify find no error (a warning
for leftovers the next prune removes at most), the dead process's lock does not stand
in anyone's way, and the next prune finishes and leaves nothing more to remove.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dr.storage.registry import open_store
from tests.helpers import DR, run_dr_process
from tests.repo_helpers import describe_tree

pytestmark = pytest.mark.slow

# What check may say right after a kill: packs written or still there that no index
# names (repacked packs not indexed yet, packs whose index entries are gone already).
LEFTOVER = "not in any index"

# Each backup is smaller than a pack (16 MiB): one data pack per backup. Files are
# random (incompressible) and shared between backups by content: forgetting the first
# two backups leaves the first's pack partly used (repacked) and the second's unused
# (deleted), and five index files (one per backup, one of the repack) superseded.
_LAYOUTS = [("a", "b"), ("g",), ("a", "c"), ("a", "c", "d")]
_FORGOTTEN = 2


@pytest.fixture(params=["file", "s3"])
def repo_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return f"file://{tmp_path}/repo"
    s3 = request.getfixturevalue("s3_env")
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/repo?endpoint={s3['endpoint']}&addressingStyle=path"


@pytest.fixture
def env(tmp_path: Path, repo_url: str) -> Iterator[dict[str, str]]:
    e = {
        "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "DR_CONFIG": "",
        "DR_REPO": repo_url,
    }
    assert run_dr_process("repo", "init", env=e).code == 0
    yield e


def _names(url: str, prefix: str) -> set[str]:
    store = open_store(url)
    try:
        return {o.name for o in store.list(prefix)}
    finally:
        store.close()


def _history(tmp_path: Path, env: dict[str, str]) -> list[tuple[str, Path]]:
    """Four backups, oldest first: (snapshot id, the tree it holds)."""
    rng = random.Random(11)
    content = {name: rng.randbytes(3 << 20) for name in "abcdg"}
    made = []
    for i, files in enumerate(_LAYOUTS):
        src = tmp_path / f"src{i}"
        (src / "sub").mkdir(parents=True)
        for name in files:
            (src / "sub" / name).write_bytes(content[name])
        (src / "note.txt").write_text(f"backup {i}\n")
        os.symlink("sub/" + files[0], src / "first")
        done = run_dr_process("mover", "backup", str(src), "-o", "json", env=env)
        assert done.code == 0, done.err
        made.append((json.loads(done.out)["id"], src))
    return made


def _killed(env: dict[str, str], point: str, *args: str) -> None:
    proc = subprocess.run([DR, *args], env={**os.environ, **env, "DR_TEST_KILL_BEFORE": point},
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, f"{args} was not killed at {point}: {proc.stderr}"


def _restores(tmp_path: Path, env: dict[str, str], snaps: list[tuple[str, Path]]) -> None:
    for sid, src in snaps:
        out = tmp_path / "out"
        shutil.rmtree(out, ignore_errors=True)
        done = run_dr_process("mover", "restore", sid, str(out), env=env)
        assert done.code == 0, done.err
        assert describe_tree(out) == describe_tree(src), f"snapshot {sid[:8]} restored differently"


def _checks(env: dict[str, str], *, clean: bool) -> None:
    check = run_dr_process("repo", "check", "-o", "json", env=env)
    assert check.code == 0, check.out + check.err
    report = json.loads(check.out)
    assert report["errors"] == []
    assert all(LEFTOVER in w for w in report["warnings"]), report["warnings"]
    if clean:
        assert report["warnings"] == []
    verify = run_dr_process("verify", "--all", "--read-data", "-o", "json", env=env)
    assert verify.code == 0, verify.out + verify.err
    assert json.loads(verify.out)["errors"] == []


def _prune_finishes_clean(tmp_path: Path, env: dict[str, str], survivors: list[tuple[str, Path]]) -> None:
    """The next prune finishes; after it, nothing is left to remove and all restores."""
    pruned = run_dr_process("prune", "-o", "json", env=env)
    assert pruned.code == 0, pruned.err
    again = run_dr_process("prune", "--dry-run", "-o", "json", env=env)
    assert again.code == 0, again.err
    left = json.loads(again.out)
    assert (left["packsDeleted"], left["packsRepacked"], left["bytesFreed"]) == (0, 0, 0), left
    assert _names(env["DR_REPO"], "locks/") == set()
    _checks(env, clean=True)
    _restores(tmp_path, env, survivors)


# Where prune stops (FORMAT.md §12's steps): before the repack's index file (its packs
# are written), before the complete index (the repack's index is written), before the
# first superseded index file goes (the complete index is written), after two of five
# superseded index files, after one of the packs to delete.
PRUNE_KILL_POINTS = {
    "repacked-packs-written": "put:index/:1",
    "repack-indexed": "put:index/:2",
    "new-index-written": "delete:index/:1",
    "index-deletes-midway": "delete:index/:3",
    "pack-deletes-midway": "delete:data/:2",
}


@pytest.mark.parametrize("point", PRUNE_KILL_POINTS.values(), ids=PRUNE_KILL_POINTS.keys())
def test_a_prune_killed_at_any_step_loses_nothing(tmp_path: Path, env: dict[str, str], point: str) -> None:
    made = _history(tmp_path, env)
    forgotten, survivors = made[:_FORGOTTEN], made[_FORGOTTEN:]
    gone = run_dr_process("forget", *(sid for sid, _ in forgotten), env=env)
    assert gone.code == 0, gone.err
    plan = json.loads(run_dr_process("prune", "--dry-run", "-o", "json", env=env).out)
    # Every step has something to do, so each kill point falls inside the prune.
    assert plan["packsRepacked"] >= 1 and plan["packsDeleted"] >= 3 and plan["indexFilesReplaced"] == 4, plan

    _killed(env, point, "prune")
    assert len(_names(env["DR_REPO"], "locks/")) == 1, "the killed prune's lock stays behind"
    _restores(tmp_path, env, survivors)
    _checks(env, clean=False)
    _prune_finishes_clean(tmp_path, env, survivors)


def test_a_forget_killed_midway_leaves_the_rest_whole(tmp_path: Path, env: dict[str, str]) -> None:
    made = _history(tmp_path, env)
    targets = [sid for sid, _ in made[:3]]
    _killed(env, "delete:snapshots/:2", "forget", *targets)
    present = {name.rsplit("/", 1)[-1] for name in _names(env["DR_REPO"], "snapshots/")}
    assert len(present) == len(made) - 1, "the forget was to stop after its first snapshot"
    remaining = [(sid, src) for sid, src in made if sid in present]
    _restores(tmp_path, env, remaining)
    _checks(env, clean=True)
    # The forget again (what it had left), then a prune that is itself killed among its
    # pack deletes (`forget --prune`), and one that finishes.
    again = [sid for sid in targets if sid in present]
    _killed(env, "delete:data/:2", "forget", "--prune", *again)
    survivors = made[3:]
    _restores(tmp_path, env, survivors)
    _checks(env, clean=False)
    _prune_finishes_clean(tmp_path, env, survivors)


def test_a_malformed_kill_point_is_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    bad = run_dr_process("repo", "check", env={**env, "DR_TEST_KILL_BEFORE": "rename:index/:1"})
    assert bad.code == 2, bad.err
    assert bad.err.strip().splitlines() == [
        "error: DR_TEST_KILL_BEFORE='rename:index/:1': expected OP:PREFIX:N with OP put or delete "
        "and N a count from 1 (delete:index/:3)"
    ]


# A pack write as a backup or a prune makes it, in a process of its own (killed below).
_WRITE = "import sys; from dr.storage.file import FileStore; FileStore(sys.argv[1]).put(sys.argv[2], bytes(256 << 20))"


def test_prune_removes_the_temporary_file_of_a_write_killed_half_way(tmp_path: Path) -> None:
    import sys
    import time

    repo = tmp_path / "repo"
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg-data"), "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
           "DR_CONFIG": "", "DR_REPO": f"file://{repo}"}  # fmt: skip
    assert run_dr_process("repo", "init", env=env).code == 0
    proc = subprocess.Popen([sys.executable, "-c", _WRITE, str(repo), "data/ab/" + "ab" * 32])
    while not list(repo.glob("data/ab/.tmp-*")) and proc.poll() is None:
        time.sleep(0.001)
    proc.kill()
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the write finished before it could be killed"
    (left,) = repo.glob("data/ab/.tmp-*")  # never listed, so never deleted as an object
    an_hour_ago = time.time() - 3600
    os.utime(left, (an_hour_ago, an_hour_ago))
    # One of a write under way (a lock being taken beside the prune's): it stays.
    fresh = repo / "locks" / ".tmp-under-way"
    fresh.parent.mkdir(exist_ok=True)
    fresh.write_bytes(b"{}")

    pruned = run_dr_process("prune", env=env)
    assert pruned.code == 0, pruned.err
    assert not left.exists() and fresh.exists()
