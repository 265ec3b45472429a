"""The console script ``dr``: start reading the startup files ahead, then run the CLI."""

from __future__ import annotations

import sys


def main() -> None:
    """Entry point of the console script; never returns."""
    from dr.cli import prefetch, startup_gc

    startup_gc.hold()  # released once the repository is open (repo_access)
    prefetch.start(sys.argv[1:])  # before dr.cli.main's imports, and before any thread
    from dr.cli.main import main as run

    run()
