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


def run_with_stderr_on_a_terminal(
    cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[int, bytes, bytes]:
    """Run ``cmd`` with its stderr on a pseudo-terminal and stdout on a pipe: (exit code,
    stdout, all that was written to the terminal)."""
    import pty

    main_fd, tty = pty.openpty()
    try:
        done = subprocess.run(cmd, stderr=tty, stdout=subprocess.PIPE, env=env, timeout=timeout)
        os.close(tty)
        said = b""
        while True:
            try:
                chunk = os.read(main_fd, 4096)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            said += chunk
    finally:
        os.close(main_fd)
    return done.returncode, done.stdout, said
