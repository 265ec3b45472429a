"""Running the real ``dr`` entry point from tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dr.cli.main import main

DR = str(Path(sys.executable).parent / "dr")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_dr(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """Run ``dr ARGS`` in-process through the same ``main`` as the console script."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    code = e.value.code if isinstance(e.value.code, int) else 1
    return Result(code, out, err)


def run_dr_process(*args: str, env: dict[str, str] | None = None, timeout: float = 300, **kw: Any) -> Result:
    """Run ``dr ARGS`` as a separate process (exit codes, stderr, crash tests)."""
    res = subprocess.run(
        [DR, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, **kw
    )
    return Result(res.returncode, res.stdout, res.stderr)
