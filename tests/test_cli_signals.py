"""``dr`` stopped by a signal: it unwinds (``finally`` blocks run) and exits 143 for SIGTERM, 129 for
SIGHUP (the terminal closed), 130 for Ctrl-C.

The process runs the real console script against an API server that reads
requests and never answers (``silent_api``), so the command is blocked in a
request when the signal arrives — as a backup is in the middle of its work
when a CronJob's deadline or a node drain stops its pod. That the unwind
thaws a frozen application is tested in ``tests/test_hooks.py``.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.cli_support import write_config
from tests.helpers import DR, run_dr


@contextmanager
def silent_api(token: str) -> Iterator[tuple[str, threading.Event]]:
    """A loopback API server that reads each request and never answers: its URL, and an
    event set once a request carrying ``Bearer token`` has been read.

    Not "a client connected": the port was picked by the kernel, and a port just freed
    by another test may still be probed by it (a server's readiness check, a dr
    expecting a refused connection), here or in a run beside this one. Such a
    connection sent the signal while dr was still starting, before its handlers
    were installed, and dr died of it (-2, -15). The token is this test's only.
    """
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    waiting = threading.Event()
    held: list[socket.socket] = []

    def read(conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            head += data
        if f"bearer {token}".encode() in head.lower():
            waiting.set()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            threading.Thread(target=read, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", waiting
    finally:
        server.shutdown(socket.SHUT_RDWR)  # wakes the accept (close alone does not)
        server.close()
        for conn in held:
            conn.close()
        thread.join(5)


@pytest.mark.parametrize(
    ("sig", "code", "line"),
    [
        ("SIGTERM", 143, "terminated (SIGTERM)"),
        ("SIGHUP", 129, "terminated (SIGHUP)"),
        ("SIGINT", 130, "interrupted"),
    ],
)
def test_a_signal_unwinds_and_exits_with_its_code(
    capsys: pytest.CaptureFixture[str], isolated_home: Path, sig: str, code: int, line: str
) -> None:
    cfg = write_config(isolated_home)
    assert run_dr(capsys, "--config", str(cfg), "repo", "init").code == 0
    token = uuid.uuid4().hex
    with silent_api(token) as (url, waiting):
        # A stranger's connection, as another test's probe of a reused port: not dr.
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))).close()
        kubeconfig = isolated_home / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "silent",
                    "clusters": [{"name": "silent", "cluster": {"server": url}}],
                    "users": [{"name": "silent", "user": {"token": token}}],
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
            assert waiting.wait(60), "dr never sent its request"
            proc.send_signal(getattr(signal, sig))
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1] == line
    assert "Traceback" not in err
