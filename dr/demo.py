"""The README's first command: dr's main job, end to end, on embedded defaults.

Runs the real ``dr`` commands one after another in a subprocess each, printing
each step, exactly as a user would type them.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def step(title: str, *args: str) -> None:
    print(f"\n==> {title}\n$ dr {shlex.join(args)}", flush=True)
    res = subprocess.run([sys.executable, "-m", "dr.cli.main", *args], cwd=ROOT)
    if res.returncode != 0:
        print(f"step failed with exit code {res.returncode}", file=sys.stderr)
        sys.exit(res.returncode)


def main() -> None:
    step("dr's commands", "--help")
    step("check the example configuration", "config", "validate", "examples/dr.yaml")
    print("\nDone.")


if __name__ == "__main__":
    main()
