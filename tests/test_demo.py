"""The README's first command: ``python -m dr.demo`` from a clean home, on the test cluster it starts itself.

No KUBECONFIG and an empty home: the demo starts the checkout's test cluster
and the test node agent, and runs dr's main job end to end (repo init,
backup with data, lost namespace, restore, drill, runbook, report). It must
exit 0, leave its reports, and leave no process behind (the test cluster's
etcd and API server and the movers run with their working directory in the
demo's temporary directory, which is inside this test's).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dr.demo import ROOT, TESTCLUSTER


def processes_under(path: Path) -> list[str]:
    """Processes whose working directory or command line lies under ``path``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(str(path)) or str(path) in cmdline:
            found.append(f"{pid}: {cmdline.strip()[:200]}")
    return found


def test_demo_runs_end_to_end_and_cleans_up(tmp_path: Path) -> None:
    if not TESTCLUSTER.exists():
        pytest.skip(f"no test cluster at {TESTCLUSTER}")
    home, out, tmp = tmp_path / "home", tmp_path / "out", tmp_path / "tmp"
    for d in (home, tmp):
        d.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "DR_CONFIG", "DR_REPO")}
    env.update(HOME=str(home), XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_STATE_HOME=str(tmp_path / "state"), TMPDIR=str(tmp))  # fmt: skip

    res = subprocess.run([sys.executable, "-m", "dr.demo", "--out", str(out)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip

    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    # The commands a user would type, in order.
    typed = [line for line in res.stdout.splitlines() if line.startswith("$ dr ")]
    assert typed == [
        "$ dr repo init",
        "$ dr backup -n webapp",
        "$ dr restore latest",
        "$ dr runbook verify runbooks/webapp.yaml",
        f"$ dr drill run runbooks/webapp.yaml --report-dir {out}",
        f"$ dr runbook render runbooks/webapp.yaml --out {out / 'webapp-runbook.md'}",
        f"$ dr report drills --format html --out {out / 'drills.html'}",
    ]
    assert "uploads/canary/canary.txt: identical" in res.stdout
    assert "PASSED" in res.stdout and "[pass] uploads-intact (data)" in res.stdout
    # The reports stay; everything else the demo started is gone.
    drill = [p for p in out.glob("webapp-2*.json")]
    assert (
        len(drill) == 1 and drill[0].with_suffix(".md").is_file() and drill[0].with_suffix(".html").is_file()
    )
    assert "# Runbook: webapp" in (out / "webapp-runbook.md").read_text()
    assert "webapp" in (out / "drills.html").read_text()
    assert (tmp_path / "data" / "dr" / "repo").is_dir() and (
        tmp_path / "config" / "dr" / "repo.key"
    ).is_file()
    assert processes_under(tmp_path) == []
    assert list(tmp.iterdir()) == []
