"""The line a long read shows on a terminal ("reading snapshots 1,234/3,650"), and the counts
the repository gives it (``Repository.read_progress``).

On SeaweedFS `dr backups list` of 3,650 snapshots was 5-13 s of silence (minutes on S3):
one GET per snapshot, and per index file for `dr repo check` and `dr prune`. Off a
terminal, with --quiet and with -o json nothing may change: CronJob logs and scripts read
those streams.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dr.crypto.providers.local import LocalKeyProvider
from dr.drill.model import DrillReport, ReportObjectives
from dr.drill.run import save_report
from dr.kube.client import KubeClient
from dr.repo.check import check, load_snapshots
from dr.repo.format import BlobType
from dr.repo.repository import Repository
from dr.repo.snapshots import Snapshot, find_snapshot, list_snapshots, readable_snapshots, save_snapshot
from dr.storage.registry import open_store
from tests import servers
from tests.cli_support import write_config, write_runbook
from tests.conftest import Kube
from tests.helpers import run_with_stderr_on_a_terminal
from tests.kube_helpers import delete_namespace, make_namespace
from tests.volume_helpers import create_pod

# `dr ARGS` with the line's delay set (the first argument): 0 shows every read's line, as a
# slow store does; the real delay keeps a read of a few local objects silent.
DR_WITH_DELAY = (
    "import sys; import dr.cli.progress as p; p.READ_LINE_DELAY = float(sys.argv[1]); "
    "from dr.cli.main import main; main(sys.argv[2:])"
)
INDEX_FILES = 3
POLICY = {"name": "nightly", "schedule": "0 2 * * *", "rpo": "24h", "scope": {"namespaces": ["shop"]}}


def _repository(directory: Path, snapshots: int, reports: int = 0) -> Path:
    """``directory/dr.yaml`` naming a file:// repository of ``snapshots`` backups,
    ``INDEX_FILES`` index files and ``reports`` drill reports (of app shop)."""
    directory.mkdir()
    config = write_config(directory, backup_policies=[POLICY])
    key = LocalKeyProvider(directory / "repo.key", create=True)
    repo = Repository.init(open_store(f"file://{directory}/repo"), key)
    for i in range(INDEX_FILES):
        with repo.saver() as saver:
            saver.save(BlobType.DATA, f"blob {i}".encode())
            saver.flush()
    for i in range(snapshots):
        save_snapshot(repo, Snapshot(kind="backup", name=f"nightly-{i}", policy="nightly", phase="Completed"))
    started = datetime.now(UTC)
    objectives = ReportObjectives(rpo=timedelta(hours=24), rto=timedelta(hours=1))
    for i in range(reports):
        report = DrillReport(id=f"shop-{i}", app="shop", runbook="shop.yaml", started=started - timedelta(days=i),
                             outcome="passed", objectives=objectives)  # fmt: skip
        save_report(repo, report)
    return config


def _dr(
    config: Path, delay: float, *args: str, terminal: bool, kubeconfig: str | None = None
) -> tuple[int, bytes, bytes]:
    """Run ``dr ARGS``; stdout a pipe, stderr a pseudo-terminal (``terminal``) or a pipe; no
    cluster unless ``kubeconfig``. -> (exit code, stdout, what stderr received)."""
    cmd = [sys.executable, "-c", DR_WITH_DELAY, str(delay), *args]
    home = config.parent
    env = {**{k: v for k, v in os.environ.items() if k not in ("DR_REPO", "KUBECONFIG")},
           "DR_CONFIG": str(config), "HOME": str(home / "home"), "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_DATA_HOME": str(home / "data"), "TERM": "xterm", "COLUMNS": "100"}  # fmt: skip
    if kubeconfig:
        env["KUBECONFIG"] = kubeconfig
    if not terminal:
        done = subprocess.run(cmd, capture_output=True, env=env, timeout=120)
        return done.returncode, done.stdout, done.stderr
    return run_with_stderr_on_a_terminal(cmd, env=env, timeout=120)


_CONTROL = re.compile(rb"\x1b\[([?0-9;]*)([A-Za-z])|\r|\n|[^\x1b\r\n]+")


def _screen(said: bytes) -> list[str]:
    """The lines a terminal shows after ``said``: text, carriage returns and new lines,
    cursor up and erase-line sequences, as rich's live display uses them (colours and
    the cursor's visibility ignored)."""
    lines: list[str] = [""]
    row = col = 0
    for m in _CONTROL.finditer(said):
        token = m.group(0)
        if token == b"\r":
            col = 0
        elif token == b"\n":
            row += 1
            lines += [""] * (row + 1 - len(lines))
        elif m.group(2):
            arg, op = m.group(1).decode(), m.group(2).decode()
            if op == "A":
                row = max(0, row - int(arg or 1))
            elif op == "K":  # erase the line (2), or from the cursor on (0, the default)
                lines[row] = "" if arg == "2" else lines[row][:col]
        else:
            text = token.decode(errors="replace")
            lines[row] = lines[row][:col].ljust(col) + text + lines[row][col + len(text) :]
            col += len(text)
    return [line.rstrip() for line in lines if line.strip()]


def test_the_screen_emulation_keeps_text_and_erases_what_is_erased() -> None:
    # The check below of a line gone relies on it: a line not erased stays on the screen.
    assert _screen(b"kept\r\nreading 1/2\r\x1b[2K") == ["kept"]
    assert _screen(b"kept\r\nreading 1/2\r\n") == ["kept", "reading 1/2"]
    assert _screen(b"a\r\nb\r\n\x1b[1A\x1b[2K\x1b[1A\x1b[2Kc") == ["c"]


def test_every_read_of_all_snapshots_and_of_the_index_is_counted_from_0_to_its_end(tmp_path: Path) -> None:
    config = _repository(tmp_path / "r", 30)
    key = LocalKeyProvider(config.parent / "repo.key")
    repo = Repository.open(open_store(f"file://{config.parent}/repo"), lambda uri: key)
    told: list[tuple[str, int, int]] = []
    repo.read_progress = lambda what, done, total: told.append((what, done, total))

    def reads() -> list[list[tuple[str, int, int]]]:
        """``told`` cut into reads (each starts at 0), and emptied."""
        runs: list[list[tuple[str, int, int]]] = []
        for t in told:
            if t[1] == 0:
                runs.append([])
            runs[-1].append(t)
        told.clear()
        return runs

    def counted(run: list[tuple[str, int, int]], what: str, total: int) -> None:
        assert run[0] == (what, 0, total) and run[-1] == (what, total, total)
        done = [d for _, d, _ in run]
        assert done == sorted(done) and done.count(total) == 1 and {w for w, _, t in run} == {what}

    for read in (
        lambda: readable_snapshots(repo, "backup"),
        lambda: list_snapshots(repo),
        lambda: find_snapshot(repo, "latest", kind="backup", what="backup"),
        lambda: load_snapshots(repo),
    ):
        read()
        [run] = reads()
        counted(run, "snapshots", 30)
    repo.reload_index()
    [run] = reads()
    counted(run, "index", INDEX_FILES)
    # `dr repo check`: the index (its damaged files counted too), then the snapshots.
    assert check(repo).ok
    index, snaps = reads()
    counted(index, "index", INDEX_FILES)
    counted(snaps, "snapshots", 30)
    # An id prefix reads the snapshots it matches only, and counts those.
    some = list_snapshots(repo)[7]
    told.clear()
    find_snapshot(repo, some.id[:12], kind="backup", what="backup")
    [run] = reads()
    counted(run, "snapshots", 1)


@pytest.fixture(scope="module")
def year(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dr.yaml of a repository of 1,200 backups (a count with a thousands separator)."""
    return _repository(tmp_path_factory.mktemp("year") / "r", 1200)


@pytest.mark.parametrize(
    ("args", "reads"),
    [
        (["backups", "list"], [b"reading snapshots"]),
        (["backups", "describe", "latest"], [b"reading snapshots"]),
        (["repo", "info"], [b"reading snapshots"]),
        (["status"], [b"reading snapshots"]),
        (["forget", "--keep-last", "1", "--dry-run"], [b"reading snapshots"]),
        (
            ["prune", "--dry-run"],
            [b"reading the index", f"/{INDEX_FILES} files".encode(), b"reading snapshots"],
        ),
        (["repo", "check"], [b"reading the index", b"reading snapshots"]),
        (["verify", "latest"], [b"reading snapshots", b"reading the index"]),
    ],
)
def test_on_a_terminal_a_long_read_shows_a_line_on_stderr_which_is_gone_at_the_end(
    year: Path, args: list[str], reads: list[bytes]
) -> None:
    config = year
    code, out, said = _dr(config, 0, *args, terminal=True)
    assert code == 0, said
    for read in reads:
        assert read in said, said
    if b"reading snapshots" in reads:
        assert b"/1,200" in said, said
    assert not [line for line in _screen(said) if "reading" in line], _screen(said)
    if args[0] != "status":  # which says how old the backups are, to the second
        # stdout is the command's output alone, byte for byte as off a terminal.
        piped = _dr(config, 0, *args, terminal=False)
        assert piped[0] == 0 and out == piped[1] and b"reading" not in piped[2]


def test_a_read_that_fails_part_way_takes_its_line_down_before_the_error_is_said(tmp_path: Path) -> None:
    config = _repository(tmp_path / "r", 300)
    damaged = sorted((config.parent / "repo" / "snapshots").iterdir())[150]
    damaged.write_bytes(b"not a sealed object")
    # Prune must see every snapshot: one that cannot be read stops it (exit 1).
    code, _, said = _dr(config, 0, "prune", "--dry-run", terminal=True)
    assert code == 1 and b"reading snapshots" in said, said
    screen = _screen(said)
    assert not [line for line in screen if "reading" in line], screen
    assert [line for line in screen if damaged.name in line], screen


@pytest.mark.parametrize(
    "args",
    [
        ["backups", "list", "-o", "json"],
        ["--quiet", "backups", "list"],
        ["verify", "latest", "-o", "json"],
        ["prune", "--dry-run", "-o", "yaml"],
        ["status", "-o", "json"],
    ],
)
def test_with_quiet_or_a_document_on_stdout_a_terminal_shows_no_line(tmp_path: Path, args: list[str]) -> None:
    config = _repository(tmp_path / "r", 40)
    code, out, said = _dr(config, 0, *args, terminal=True)
    assert code == 0, said
    assert b"reading" not in said and b"\x1b[" not in said, said
    if "status" not in args:  # which says how old the backups are, to the second
        assert out == _dr(config, 0, *args, terminal=False)[1]


def test_a_read_that_ends_soon_shows_nothing_on_a_terminal(tmp_path: Path) -> None:
    # Five local snapshots take milliseconds: a line would only flash.
    from dr.cli.progress import READ_LINE_DELAY

    config = _repository(tmp_path / "r", 5)
    for args in (["backups", "list"], ["repo", "check"], ["prune", "--dry-run"]):
        code, _, said = _dr(config, READ_LINE_DELAY, *args, terminal=True)
        assert code == 0, said
        assert b"reading" not in said, said


def test_restore_latest_shows_the_line_while_it_picks_the_backup(year: Path) -> None:
    # Without a cluster (no kubeconfig here) it stops once the backup is picked: the line was
    # shown while every snapshot was read, and is gone before the error is said.
    code, _, said = _dr(year, 0, "restore", "latest", terminal=True)
    assert code != 0 and b"reading snapshots" in said and b"/1,200" in said, said
    screen = _screen(said)
    assert not [line for line in screen if "reading" in line], screen
    assert screen[-1].startswith("error: no Kubernetes configuration"), screen


def test_drill_run_shows_the_line_while_it_picks_the_latest_backup(
    tmp_path: Path, k8s: servers.TestCluster
) -> None:
    # A drill reads every snapshot to pick the app's latest backup, as `dr restore latest` does,
    # and was silent meanwhile. Here the backup picked holds none of the runbook's namespaces: the
    # drill cannot run (exit 1, its report saved), after the line was shown and taken down.
    config = _repository(tmp_path / "r", 300)
    runbook = write_runbook(tmp_path / "shop.yaml", "shop", "shop", backup_policy="nightly")
    code, _, said = _dr(
        config, 0, "drill", "run", str(runbook), "--no-data", terminal=True, kubeconfig=k8s.kubeconfig
    )
    assert code == 1 and b"reading snapshots" in said and b"/300" in said, said
    screen = _screen(said)
    assert not [line for line in screen if "reading" in line], screen
    assert screen[-1].startswith("error: drill of shop could not run: "), screen


def test_drill_run_with_a_class_mapping_shows_the_line_while_it_checks_the_mapping(tmp_path: Path) -> None:
    # --storage-class-mapping is checked against the backup before the drill starts: that read of
    # every snapshot comes first, before the cluster is asked (none here: it stops there).
    config = _repository(tmp_path / "r", 300)
    runbook = write_runbook(tmp_path / "shop.yaml", "shop", "shop", backup_policy="nightly")
    args = ["drill", "run", str(runbook), "--storage-class-mapping", "fast=slow"]
    code, _, said = _dr(config, 0, *args, terminal=True)
    assert code != 0 and b"reading snapshots" in said and b"/300" in said, said
    screen = _screen(said)
    assert not [line for line in screen if "reading" in line], screen
    assert screen[-1].startswith("error: no Kubernetes configuration"), screen
    code, _, said = _dr(config, 0, *args, "-o", "json", terminal=True)  # a document: no line
    assert code != 0 and b"reading" not in said and b"\x1b[" not in said, said


def test_backup_shows_the_line_while_it_reads_the_earlier_backups(
    tmp_path: Path, kube: Kube, kube_client: KubeClient, unique: str
) -> None:
    # The volume step reads every backup for each claim's parent snapshot (incremental,
    # ``dr.cli.volume_access``), as soon as the namespace has a pod or a claim: silent before.
    config = _repository(tmp_path / "r", 300)
    ns = f"readline-{unique}"
    make_namespace(kube_client, ns)
    try:
        create_pod(kube_client, ns, "app-0", [])
        code, out, said = _dr(config, 0, "backup", "-n", ns, terminal=True, kubeconfig=kube.kubeconfig)
        assert code == 0 and b"reading snapshots" in said and b"/300" in said, said
        assert not [line for line in _screen(said) if "reading" in line], _screen(said)
        assert out.startswith(b"backup "), out
        json_out = _dr(config, 0, "backup", "-n", ns, "-o", "json", terminal=True, kubeconfig=kube.kubeconfig)
        assert json_out[0] == 0 and b"reading" not in json_out[2], json_out[2]  # a document: no line
    finally:
        delete_namespace(kube_client, ns)


@pytest.mark.parametrize(
    ("args", "reads"),
    [
        (["runbook", "render", "RUNBOOK"], [b"reading snapshots", b"/300", b"reading drill reports", b"/40"]),
        (["report", "drills"], [b"reading drill reports", b"/40"]),
        (["report", "drills", "-o", "json"], []),  # a document for scripts: as `-o json` elsewhere
        (["--quiet", "runbook", "render", "RUNBOOK"], []),
    ],
)
def test_the_pages_of_runbooks_and_drills_show_the_line_while_they_read_the_repository(
    tmp_path: Path, args: list[str], reads: list[bytes]
) -> None:
    # `dr runbook render` reads every snapshot (the app's latest backup) and every drill report
    # (its latest passing drill); `dr report drills` every report: both were silent meanwhile.
    config = _repository(tmp_path / "r", 300, reports=40)
    runbook = write_runbook(tmp_path / "shop.yaml", "shop", "shop", backup_policy="nightly")
    args = [str(runbook) if a == "RUNBOOK" else a for a in args]
    code, out, said = _dr(config, 0, *args, terminal=True)
    assert code == 0, said
    for read in reads:
        assert read in said, said
    if not reads:
        assert b"reading" not in said and b"\x1b[" not in said, said
    assert not [line for line in _screen(said) if "reading" in line], _screen(said)
    assert out  # the page, on stdout


# A read's line up when Ctrl-C comes: the notice is written straight to the terminal, under
# the line; the line is then taken down (the read ends) and must not stay above the notice.
CTRL_C_UNDER_A_LINE = """
import os, signal, sys, time, types
import dr.cli.progress as p
from dr import interrupt
p.READ_LINE_DELAY = 0
repo = types.SimpleNamespace(read_progress=None)
with interrupt.signals_handled():
    try:
        with p.read_progress(repo):
            repo.read_progress("snapshots", 0, 3650)
            repo.read_progress("snapshots", 12, 3650)
            time.sleep(0.3)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    except KeyboardInterrupt:
        pass
print("after", file=sys.stderr)
"""


def test_ctrl_c_under_a_read_line_leaves_the_notice_and_not_the_line() -> None:
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}
    code, _, said = run_with_stderr_on_a_terminal([sys.executable, "-c", CTRL_C_UNDER_A_LINE], env=env)
    assert code == 0 and b"reading snapshots" in said, said
    screen = _screen(said)
    assert not [line for line in screen if "reading" in line], screen
    assert screen[0].startswith("interrupted: stopping and cleaning up;") and screen[-1] == "after", screen
