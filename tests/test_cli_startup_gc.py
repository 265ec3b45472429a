"""Collections held back while a command starts (dr/cli/startup_gc.py). Each case
runs in a process of its own: the collector's settings are the process's."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from dr.cli.startup_gc import HELD_THRESHOLD


def run_python(code: str, env: dict[str, str] | None = None) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_hold_then_release_freezes_once_and_restores_the_threshold() -> None:
    seen = run_python(
        """
        import gc
        from dr.cli import startup_gc
        startup_gc.hold(); startup_gc.hold()
        print(gc.get_threshold()[0], gc.isenabled())
        junk = [[] for _ in range(1000)]
        startup_gc.release()
        frozen = gc.get_freeze_count()
        print(gc.get_threshold()[0], frozen >= 1000)
        startup_gc.release()  # later calls change nothing
        print(gc.get_threshold()[0], gc.get_freeze_count() == frozen)
        """
    )
    assert seen == [str(HELD_THRESHOLD), "True", "700", "True", "700", "True"]


def test_the_console_entry_releases_once_the_repository_is_open(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DR_REPO": f"file://{tmp_path / 'repo'}",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "DR_NO_PREFETCH": "1",
    }
    env.pop("DR_CONFIG", None)
    report = """
        import atexit, gc, sys
        atexit.register(lambda: print(gc.get_threshold()[0]))
        sys.argv = ["dr", *{argv!r}]
        from dr.cli.entry import main
        main()
        """
    run_python(report.format(argv=["--quiet", "repo", "init"]), env)  # no repository opened
    assert run_python(report.format(argv=["--quiet", "repo", "info", "-o", "json"]), env)[-1] == "700"
    # A command that opens no repository still collects, at the raised threshold.
    assert run_python(report.format(argv=["--version"]), env)[-1] == str(HELD_THRESHOLD)
