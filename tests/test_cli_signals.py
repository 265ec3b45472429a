"""``dr`` stopped by a signal: it unwinds (``finally`` blocks run) and exits 143 for SIGTERM, 130 for Ctrl-C.

The process runs the real console script against an API server that accepts
connections and never answers (``tests.ws_peer``), so the command is blocked
in a request when the signal arrives — as a backup is in the middle of its
work when a CronJob's deadline or a node drain stops its pod. That the unwind
thaws a frozen application is tested in ``tests/test_hooks.py``.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.cli_support import write_config
from tests.helpers import DR, run_dr
from tests.ws_peer import ws_peer


@pytest.mark.parametrize(
    ("sig", "code", "line"), [("SIGTERM", 143, "terminated (SIGTERM)"), ("SIGINT", 130, "interrupted")]
)
def test_a_signal_unwinds_and_exits_with_its_code(
    capsys: pytest.CaptureFixture[str], isolated_home: Path, sig: str, code: int, line: str
) -> None:
    cfg = write_config(isolated_home)
    assert run_dr(capsys, "--config", str(cfg), "repo", "init").code == 0
    with ws_peer("nohandshake") as peer:
        kubeconfig = isolated_home / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "silent",
                    "clusters": [{"name": "silent", "cluster": {"server": peer.url}}],
                    "users": [{"name": "silent", "user": {"token": "t"}}],
                    "contexts": [{"name": "silent", "context": {"cluster": "silent", "user": "silent"}}],
                }
            )
        )
        proc = subprocess.Popen(
            [DR, "--config", str(cfg), "--kubeconfig", str(kubeconfig), "backup", "-n", "shop"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert peer.accepted.wait(60), "dr never connected"
            proc.send_signal(getattr(signal, sig))
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1] == line
    assert "Traceback" not in err
