"""How the cluster commands meet a cluster they cannot use: one line, the right exit code,
within a bounded time.

A kubeconfig whose API server accepts connections and never answers (a hung server, a load
balancer with no backend, a proxy that swallows TLS): ``dr backup`` hung for ever (after its own
requests gave up, ~50 s each, the BackupFailed Event went through the generated client, which has
no timeout); so did ``dr status``'s namespace check (it "always exits 0"). The bound is
``dr.kube.client.PROBE_SECONDS``; the tests shorten it to keep to a few seconds. Credentials the
server rejects, a failing exec plugin, a server that is no URL, a path that is no file.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests import servers
from tests.helpers import Result, run_dr

Capsys = pytest.CaptureFixture[str]
PROBE = 1.0


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never sends a byte."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for c in held:
            c.close()
        sock.close()


@pytest.fixture
def silent_kubeconfig(k8s: servers.TestCluster, silent_server: int, tmp_path: Path) -> Path:
    doc = yaml.safe_load(Path(k8s.kubeconfig).read_text())
    doc["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{silent_server}"
    path = tmp_path / "silent.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def short_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dr.kube.client.PROBE_SECONDS", PROBE)


def timed(capsys: Capsys, *args: str) -> tuple[Result, float]:
    t0 = time.monotonic()
    res = run_dr(capsys, *args)
    return res, time.monotonic() - t0


@pytest.mark.usefixtures("short_probe")
@pytest.mark.parametrize(
    "args",
    [["backup", "-n", "default", "--no-data"], ["restore", "latest", "--dry-run"], ["backups", "list"]],
    ids=["backup", "restore", "backups-list"],
)
def test_a_server_that_never_answers_fails_within_the_bound_with_one_line(
    capsys: Capsys, k8s: servers.TestCluster, isolated_home: Path, silent_kubeconfig: Path, silent_server: int,
    args: list[str],
) -> None:  # fmt: skip
    assert run_dr(capsys, "repo", "init").code == 0
    assert run_dr(capsys, "--kubeconfig", k8s.kubeconfig, "backup", "-n", "default", "--no-data").code == 0
    res, took = timed(capsys, "--kubeconfig", str(silent_kubeconfig), *args)
    if args[0] == "backups":  # needs no cluster: not even asked
        assert res.code == 0, res.err
        return
    assert took < PROBE + 5, took
    assert (res.code, res.out) == (1, ""), res.err
    assert res.err.splitlines() == [
        f"error: cannot reach the Kubernetes API at https://127.0.0.1:{silent_server}: "
        f"no answer within {PROBE:g}s"
    ]


@pytest.mark.usefixtures("short_probe")
def test_status_with_a_server_that_never_answers_warns_within_the_bound(
    capsys: Capsys, isolated_home: Path, silent_kubeconfig: Path, silent_server: int
) -> None:
    res, took = timed(capsys, "--kubeconfig", str(silent_kubeconfig), "status", "-o", "json")
    assert took < PROBE + 5, took
    assert res.code == 0, res.err
    assert res.json()["warnings"] == [
        "namespaces without a backup policy: not checked (cannot reach the Kubernetes API at "
        f"https://127.0.0.1:{silent_server}: no answer within {PROBE:g}s)"
    ]


@pytest.fixture
def wrong_token_kubeconfig(k8s: servers.TestCluster, tmp_path: Path) -> Path:
    doc = yaml.safe_load(Path(k8s.kubeconfig).read_text())
    doc["users"][0]["user"]["token"] = "not-a-token-of-this-cluster"
    path = tmp_path / "wrong-token.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    "args",
    [["backup", "-n", "default", "--no-data"], ["restore", "latest", "--dry-run"]],
    ids=["backup", "restore"],
)
def test_credentials_the_server_rejects_are_one_line_naming_them(
    capsys: Capsys,
    k8s: servers.TestCluster,
    isolated_home: Path,
    wrong_token_kubeconfig: Path,
    args: list[str],
) -> None:
    # Before: "error: cannot read the cluster's API: GET /version: 401 Unauthorized: Unauthorized"
    # after a warning that the BackupFailed Event could not be recorded (401 again).
    assert run_dr(capsys, "repo", "init").code == 0
    assert run_dr(capsys, "--kubeconfig", k8s.kubeconfig, "backup", "-n", "default", "--no-data").code == 0
    res = run_dr(capsys, "--kubeconfig", str(wrong_token_kubeconfig), *args)
    assert (res.code, res.out) == (1, ""), res.err
    server = yaml.safe_load(wrong_token_kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    assert res.err.splitlines() == [
        f"error: the Kubernetes API at {server} rejected the credentials (401 Unauthorized): "
        "check the kubeconfig's user (token expired or for another cluster?)"
    ]
    assert "not-a-token-of-this-cluster" not in res.err


def test_an_exec_credential_plugin_that_fails_is_one_line_naming_the_kubeconfig(
    capsys: Capsys, k8s: servers.TestCluster, isolated_home: Path, tmp_path: Path
) -> None:
    # The client library logged the plugin's failure as a root-logger error, went on without
    # credentials, and the command ended on the server's 401: the cause was a log line above it.
    doc = yaml.safe_load(Path(k8s.kubeconfig).read_text())
    doc["users"][0]["user"] = {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                        "command": str(tmp_path / "no-such-plugin"), "interactiveMode": "Never"}}  # fmt: skip
    path = tmp_path / "exec.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    assert run_dr(capsys, "repo", "init").code == 0
    res = run_dr(capsys, "--kubeconfig", str(path), "backup", "-n", "default", "--no-data")
    assert (res.code, res.out) == (2, ""), res.err
    assert res.err.splitlines() == [
        f"error: kubeconfig {path}: its exec credential plugin failed: "
        f"[Errno 2] No such file or directory: '{tmp_path / 'no-such-plugin'}'"
    ]


@pytest.mark.parametrize(
    "server", ["not a url", "ftp://127.0.0.1:6443", "https://a b:6443", "127.0.0.1:6443"]
)
def test_a_server_that_is_not_an_http_url_is_one_line_exit_2(
    capsys: Capsys, k8s: servers.TestCluster, isolated_home: Path, tmp_path: Path, server: str
) -> None:
    # "not a url" was retried for 4 s and ended as "cannot reach the Kubernetes API at not a url:
    # Failed to parse: ..." (exit 1); "127.0.0.1:6443" (kubectl: https) as "Connection refused".
    doc = yaml.safe_load(Path(k8s.kubeconfig).read_text())
    doc["clusters"][0]["cluster"]["server"] = server
    path = tmp_path / "bad-server.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    assert run_dr(capsys, "repo", "init").code == 0
    res = run_dr(capsys, "--kubeconfig", str(path), "backup", "-n", "default", "--no-data")
    assert (res.code, res.out) == (2, ""), res.err
    [line] = res.err.splitlines()
    assert line.startswith(f"error: kubeconfig {path}: the cluster of context 'testcluster': server "), line
    assert line.endswith(" is not an http(s)://host[:port] URL"), line


@pytest.mark.parametrize(
    ("given", "why"), [("{tmp}", "is a directory, not a file"), ("/dev/null", "is not a regular file")]
)
def test_a_kubeconfig_path_that_is_not_a_file_says_what_it_is(
    capsys: Capsys, isolated_home: Path, tmp_path: Path, given: str, why: str
) -> None:
    path = given.format(tmp=tmp_path)
    assert run_dr(capsys, "repo", "init").code == 0
    res = run_dr(capsys, "--kubeconfig", path, "backup", "-n", "default", "--no-data")
    assert (res.code, res.out, res.err) == (
        2,
        "",
        f"error: kubeconfig {path}: {why}\n",
    )  # was: "file not found"


def test_a_server_whose_certificate_is_not_verified_is_one_warning_not_one_per_request(
    k8s: servers.TestCluster, isolated_home: Path
) -> None:
    # A kubeconfig with insecure-skip-tls-verify: urllib3 printed its two-line
    # InsecureRequestWarning at every request (47 of them for a small backup), --quiet or not.
    # A separate process: pytest records warnings in-process instead of printing them.
    from tests.helpers import run_dr_process

    doc = yaml.safe_load(Path(k8s.kubeconfig).read_text())
    cluster = doc["clusters"][0]["cluster"]
    cluster.pop("certificate-authority-data", None)
    cluster.pop("certificate-authority", None)
    cluster["insecure-skip-tls-verify"] = True
    insecure = isolated_home / "insecure.kubeconfig"
    insecure.write_text(yaml.safe_dump(doc))
    env = {"XDG_DATA_HOME": str(isolated_home / "data"), "XDG_CONFIG_HOME": str(isolated_home / "config")}
    assert run_dr_process("repo", "init", env=env).code == 0
    for command in (["backup", "-n", "default", "--no-data"], ["status"]):
        args = ("--kubeconfig", str(insecure), *command)
        res = run_dr_process("--quiet", *args, env=env)
        assert (res.code, res.err) == (0, ""), (command, res.err)
        res = run_dr_process(*args, env={**env, "DR_LOG_FORMAT": "text"})
        assert res.code == 0, res.err
        assert "InsecureRequestWarning" not in res.err
        assert [line for line in res.err.splitlines() if "verif" in line] == [
            f"the certificate of the Kubernetes API at {cluster['server']} is not verified (insecure-skip-tls-verify)"
        ], (command, res.err)
