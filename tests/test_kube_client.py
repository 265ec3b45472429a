"""dr.kube.client: connecting (and the errors of doing it wrong), raw requests, API errors, retries."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dr.errors import InvalidInput
from dr.kube.client import ApiError, KubeClient, RetryPolicy, connect
from tests import servers
from tests.helpers import run_dr
from tests.kube_stub_server import StubApi, stub_api

STATUS_503 = {"kind": "Status", "reason": "ServiceUnavailable", "message": "etcd is sick"}
VERSION = {"major": "1", "minor": "36", "gitVersion": "v1.36.0"}


# --------------------------------------------------------------------------- connecting


def test_connect_to_the_test_cluster(k8s: servers.TestCluster) -> None:
    with connect(k8s.kubeconfig, None) as kc:
        assert kc.version()["gitVersion"].startswith("v1.")
        assert kc.get("/api/v1/namespaces/default")["metadata"]["name"] == "default"
        assert kc.api_client.configuration.connection_pool_maxsize == 16


def test_the_probe_s_version_is_not_asked_again(
    k8s: servers.TestCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every cluster command probes /version first; a backup records the cluster's version: one request.
    with connect(k8s.kubeconfig, None) as kc:
        kc.probe()
        asked: list[str] = []
        monkeypatch.setattr(kc, "call", lambda method, path, **kw: asked.append(path))
        assert kc.version()["gitVersion"]
        assert asked == []


def test_connect_uses_kubeconfig_from_the_environment(
    k8s: servers.TestCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", k8s.kubeconfig)
    with connect() as kc:
        assert kc.get("/api")["kind"] == "APIVersions"


def test_kubeconfig_list_from_the_environment_skips_missing_files(
    k8s: servers.TestCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As kubectl does: a file of $KUBECONFIG's list that does not exist is skipped (dr refused all).
    missing = tmp_path / "gone.yaml"
    monkeypatch.setenv("KUBECONFIG", f"{missing}:{k8s.kubeconfig}")
    with connect() as kc:
        assert kc.get("/api")["kind"] == "APIVersions"
    # None of them exists: named, as before.
    monkeypatch.setenv("KUBECONFIG", f"{missing}:{tmp_path / 'also-gone.yaml'}")
    with pytest.raises(InvalidInput) as e:
        connect()
    assert str(e.value) == f"kubeconfig {missing}:{tmp_path / 'also-gone.yaml'}: file not found"
    # --kubeconfig is one path, as kubectl's (not a list): the whole of it is named.
    with pytest.raises(InvalidInput) as e:
        connect(f"{missing}:{k8s.kubeconfig}")
    assert str(e.value) == f"kubeconfig {missing}:{k8s.kubeconfig}: file not found"


def test_kubeconfig_option_is_one_path_even_with_a_colon(
    k8s: servers.TestCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --kubeconfig was split on ':' like $KUBECONFIG: a file in "a:b/" was "a" and "b/…", not found.
    import base64

    import yaml

    doc = yaml.safe_load(Path(k8s.kubeconfig).read_text())
    cluster = doc["clusters"][0]["cluster"]
    folder = tmp_path / "ctx:prod"
    folder.mkdir()
    # A relative file reference is relative to the kubeconfig's folder, as kubectl has it.
    (folder / "ca:1.crt").write_bytes(base64.b64decode(cluster.pop("certificate-authority-data")))
    cluster["certificate-authority"] = "ca:1.crt"
    path = folder / "admin:kube.config"
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/a:/nonexistent/b")  # ignored when --kubeconfig is given
    with connect(str(path)) as kc:
        assert kc.get("/api")["kind"] == "APIVersions"
    context = doc["contexts"][0]["name"]
    with connect(str(path), context) as kc:
        assert kc.get("/api")["kind"] == "APIVersions"
    with pytest.raises(InvalidInput) as e:
        connect(str(path), "staging")
    assert str(e.value).startswith(f"kubeconfig {path}: ") and "staging" in str(e.value)


def test_missing_kubeconfig_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as e:
        connect(str(tmp_path / "nope.yaml"))
    assert str(e.value) == f"kubeconfig {tmp_path / 'nope.yaml'}: file not found"


def _refused(capsys: pytest.CaptureFixture[str], kubeconfig: Path, expected: str) -> None:
    """connect() refuses ``kubeconfig`` with ``expected``; the CLI says it in one line, exit 2."""
    with pytest.raises(InvalidInput) as e:
        connect(str(kubeconfig))
    assert str(e.value) == expected
    r = run_dr(capsys, "--kubeconfig", str(kubeconfig), "drill", "gc")
    assert (r.code, r.out, r.err) == (2, "", f"error: {expected}\n")


def test_kubeconfig_that_is_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # It said "file not found" for a path that is there: a directory (a mounted Secret's folder
    # given for its file, ~/.kube for ~/.kube/config).
    folder = tmp_path / "kube"
    folder.mkdir()
    expected = f"kubeconfig {folder}: is a directory, not a file"
    _refused(capsys, folder, expected)
    # $KUBECONFIG alone naming it: the same; in a list beside a missing file, the directory is named.
    monkeypatch.setenv("KUBECONFIG", str(folder))
    with pytest.raises(InvalidInput) as e:
        connect()
    assert str(e.value) == expected
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'gone.yaml'}:{folder}")
    with pytest.raises(InvalidInput) as e:
        connect()
    assert (
        str(e.value) == f"kubeconfig {tmp_path / 'gone.yaml'}:{folder}: {folder} is a directory, not a file"
    )
    (tmp_path / "other").mkdir()
    monkeypatch.setenv("KUBECONFIG", f"{folder}:{tmp_path / 'other'}")
    with pytest.raises(InvalidInput) as e:
        connect()
    assert str(e.value) == (
        f"kubeconfig {folder}:{tmp_path / 'other'}: {folder}, {tmp_path / 'other'} are directories, not files"
    )


def test_kubeconfig_that_is_not_a_regular_file(tmp_path: Path) -> None:
    # A path that is there but neither file nor directory (a named pipe): not "file not found",
    # and not opened (reading a pipe nobody writes to would wait for ever).
    fifo = tmp_path / "kubeconfig.pipe"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInput) as e:
        connect(str(fifo))
    assert str(e.value) == f"kubeconfig {fifo}: is not a regular file"


def yaml_doc(path: str | Path) -> Any:
    return yaml.safe_load(Path(path).read_text())


def _contexts(path: str) -> list[str]:
    return [c["name"] for c in yaml_doc(path)["contexts"]]


def test_unknown_context(k8s: servers.TestCluster) -> None:
    # It quoted the client: "Invalid kube-config file. Expected object with name staging in
    # <path>/contexts list". Now dr's words, with the contexts there are.
    with pytest.raises(InvalidInput) as e:
        connect(k8s.kubeconfig, "staging")
    names = ", ".join(_contexts(k8s.kubeconfig))
    assert str(e.value) == f"kubeconfig {k8s.kubeconfig}: no context 'staging' (contexts: {names})"


def _variant(
    k8s: servers.TestCluster, tmp_path: Path, name: str, change: Callable[[dict[str, Any]], None]
) -> Path:
    doc = yaml_doc(k8s.kubeconfig)
    change(doc)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def test_no_current_context_and_none_given(k8s: servers.TestCluster, tmp_path: Path) -> None:
    # It said "Invalid kube-config file. Expected key current-context in <path>".
    path = _variant(k8s, tmp_path, "kubeconfig", lambda d: d.pop("current-context"))
    (context,) = _contexts(str(path))
    with pytest.raises(InvalidInput) as e:
        connect(str(path))
    assert str(e.value) == (
        f"kubeconfig {path}: no current-context set and no --context given (contexts: {context})"
    )
    with connect(str(path), context) as kc:  # naming one is enough
        assert kc.get("/api")["kind"] == "APIVersions"
    gone = _variant(k8s, tmp_path, "gone", lambda d: d.__setitem__("current-context", "old"))
    with pytest.raises(InvalidInput) as e:
        connect(str(gone))
    assert (
        str(e.value)
        == f"kubeconfig {gone}: current-context 'old' is not one of its contexts (contexts: {context})"
    )


def test_a_context_naming_a_cluster_it_does_not_define(k8s: servers.TestCluster, tmp_path: Path) -> None:
    def rename(doc: dict[str, Any]) -> None:
        doc["contexts"][0]["context"]["cluster"] = "elsewhere"

    path = _variant(k8s, tmp_path, "kubeconfig", rename)
    (context,) = _contexts(str(path))
    clusters = ", ".join(c["name"] for c in yaml_doc(path)["clusters"])
    with pytest.raises(InvalidInput) as e:
        connect(str(path))
    assert str(e.value) == (
        f"kubeconfig {path}: context {context!r} names cluster 'elsewhere', which it does not define"
        f" (clusters: {clusters})"
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "# nothing yet\n",
        "{}\n",
        "apiVersion: v1\nkind: Config\n",
        "apiVersion: v1\nkind: Config\ncontexts: []\n",
    ],
)
def test_kubeconfig_without_contexts(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # "Invalid kube-config. <path> file is empty", "Expected key current-context in …".
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    with pytest.raises(InvalidInput) as e:
        connect(str(path))
    assert str(e.value) == f"kubeconfig {path}: has no contexts"
    with pytest.raises(InvalidInput) as e:
        connect(str(path), "prod")
    assert str(e.value) == f"kubeconfig {path}: has no contexts"
    monkeypatch.setenv("KUBECONFIG", str(path))
    with pytest.raises(InvalidInput) as e:
        connect()
    assert str(e.value) == f"kubeconfig {path}: has no contexts"


def test_kubeconfig_whose_contexts_are_not_a_list(tmp_path: Path) -> None:
    # dr checks the context itself (_check_context) and says which key is wrong.
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\nkind: Config\ncontexts: {prod: {cluster: a}}\n")
    with pytest.raises(InvalidInput) as e:
        connect(str(path), "prod")
    assert str(e.value) == f"kubeconfig {path}: contexts is not a list"


def test_kubeconfig_list_names_its_files(
    k8s: servers.TestCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An empty file in $KUBECONFIG's list is no configuration, as for kubectl: it failed the
    # whole list ("Invalid kube-config. <path> file is empty").
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    missing = tmp_path / "gone.yaml"
    monkeypatch.setenv("KUBECONFIG", f"{empty}:{missing}:{k8s.kubeconfig}")
    with connect() as kc:
        assert kc.get("/api")["kind"] == "APIVersions"
    # A problem of the merged configuration names the files it was merged from.
    names = ", ".join(_contexts(k8s.kubeconfig))
    with pytest.raises(InvalidInput) as e:
        connect(None, "nope")
    assert str(e.value) == f"kubeconfig {empty}, {k8s.kubeconfig}: no context 'nope' (contexts: {names})"
    monkeypatch.setenv("KUBECONFIG", f"{empty}:{missing}")
    with pytest.raises(InvalidInput) as e:
        connect()
    assert str(e.value) == f"kubeconfig {empty}: has no contexts"


def test_broken_kubeconfig(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    with pytest.raises(InvalidInput) as e:
        connect(str(path))
    assert str(e.value).startswith(f"kubeconfig {path}: ")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (
            "clusters: [\n",
            "not valid YAML (line 2, column 1: expected the node content, but found '<stream end>')",
        ),
        ("just a string\n", "not a kubeconfig (a YAML mapping is expected)"),
        ("- a\n- list\n", "not a kubeconfig (a YAML mapping is expected)"),
    ],
)
def test_kubeconfig_that_is_not_a_kubeconfig(tmp_path: Path, text: str, why: str) -> None:
    # These escaped as yaml's ParserError or a TypeError: exit 1, several lines, not the file's fault named.
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    with pytest.raises(InvalidInput) as e:
        connect(str(path))
    assert str(e.value) == f"kubeconfig {path}: {why}"


def test_kubeconfig_cluster_without_server(tmp_path: Path) -> None:
    # It failed only at the first request: exit 1, a FutureWarning and "No host specified".
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\nclusters: [{name: c, cluster: {}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token: t}}]\n"
    )
    for context in (None, "x"):
        with pytest.raises(InvalidInput) as e:
            connect(str(path), context)
        assert str(e.value) == f"kubeconfig {path}: the cluster of context 'x' has no server"


@pytest.mark.parametrize(
    ("server", "shown"),
    [
        ("not a url", "'not a url'"),
        ("kube.example.com:6443", "'kube.example.com:6443'"),
        ("ftp://kube.example.com", "'ftp://kube.example.com'"),
        ("https://[::1:6443", "'https://[::1:6443'"),  # an unpaired "[": urlsplit refuses it
        # A port that is no number: what is wrong is said. The server stays hidden, as redact_url
        # hides a KEY:SECRET pasted without its "@" (host:text cannot be told from it).
        ("https://kube.example.com:port", "'https://***' has a port that is not a number from 0 to 65535"),
        ("https://kube.example.com:644300", "'https://***' has a port that is not a number from 0 to 65535"),
        ("https://admin:hunter2", "'https://***' has a port that is not a number from 0 to 65535"),
    ],
)
def test_kubeconfig_cluster_server_that_is_no_http_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], server: str, shown: str
) -> None:
    # A kubeconfig mistake (exit 2, naming the file), not "cannot reach the Kubernetes
    # API at not a url: Failed to parse…" (exit 1) at the first request.
    path = tmp_path / "kubeconfig"
    path.write_text(
        f"apiVersion: v1\nkind: Config\ncurrent-context: x\nclusters: [{{name: c, cluster: {{server: '{server}'}}}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token: t}}]\n"
    )
    why = "" if " has a port " in shown else " is not an http(s)://host[:port] URL"
    expected = f"kubeconfig {path}: the cluster of context 'x': server {shown}{why}"
    _refused(capsys, path, expected)


def test_no_configuration_anywhere(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(InvalidInput) as e:
        connect()
    assert str(e.value) == (
        "no Kubernetes configuration: pass --kubeconfig, set $KUBECONFIG or create ~/.kube/config "
        "(or run inside a cluster)"
    )


def test_in_cluster_without_service_account_files(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(InvalidInput, match=r"^in-cluster Kubernetes configuration: "):
        connect()
    with pytest.raises(InvalidInput, match=r"^--context 'prod' needs a kubeconfig; none was found$"):
        connect(None, "prod")


# --------------------------------------------------------------------------- errors from the real server


def test_api_errors_carry_status_reason_and_message(kube_client: KubeClient) -> None:
    with pytest.raises(ApiError) as e:
        kube_client.get("/api/v1/namespaces/no-such-namespace-x")
    assert (e.value.status, e.value.reason) == (404, "NotFound")
    assert e.value.short == '404 NotFound: namespaces "no-such-namespace-x" not found'
    assert str(e.value) == f"GET /api/v1/namespaces/no-such-namespace-x: {e.value.short}"


def test_unknown_token_is_unauthorized(k8s: servers.TestCluster, tmp_path: Path) -> None:
    text = Path(k8s.kubeconfig).read_text()
    token = str(k8s.identities["admin"]["token"])
    bad = tmp_path / "bad.kubeconfig"
    bad.write_text(text.replace(token, "0" * len(token)))
    with connect(str(bad)) as kc, pytest.raises(ApiError) as e:
        kc.version()
    assert (e.value.status, e.value.reason) == (401, "Unauthorized")


def test_forbidden_identity(k8s: servers.TestCluster) -> None:
    with connect(k8s.kubeconfig_for("bob")) as kc, pytest.raises(ApiError) as e:
        kc.get("/api/v1/namespaces/default/secrets")
    assert e.value.status == 403
    assert e.value.server_message == (
        'secrets is forbidden: User "bob" cannot list resource "secrets" in API group "" in the namespace "default"'
    )


# --------------------------------------------------------------------------- retries (stub server)


def stub_client(api: StubApi, tmp_path: Path, delays: list[float], attempts: int = 4) -> KubeClient:
    base = connect(api.kubeconfig(tmp_path))
    return KubeClient(
        base.api_client, retry=RetryPolicy(attempts=attempts, base_delay=0.01), sleep=delays.append
    )


def test_transient_errors_are_retried_with_backoff(tmp_path: Path) -> None:
    with stub_api() as api:
        api.script("/version", (503, STATUS_503, {}), (429, {}, {"Retry-After": "2"}), (200, VERSION, {}))
        delays: list[float] = []
        kc = stub_client(api, tmp_path, delays)
        assert kc.version() == VERSION
    assert len(api.requests) == 3
    assert all(headers["authorization"] == "Bearer stub-token" for _, _, headers in api.requests)
    assert 0 <= delays[0] <= 0.01 and delays[1] == 2.0  # Retry-After is honoured


def test_retries_give_up_with_the_last_answer(tmp_path: Path) -> None:
    with stub_api() as api:
        api.script("/api/v1/namespaces", (503, STATUS_503, {}))
        delays: list[float] = []
        kc = stub_client(api, tmp_path, delays, attempts=3)
        with pytest.raises(ApiError) as e:
            kc.call("POST", "/api/v1/namespaces", body={"metadata": {"name": "x"}})
    assert len(api.requests) == 3 and len(delays) == 2
    assert str(e.value) == "POST /api/v1/namespaces: 503 ServiceUnavailable: etcd is sick"


def test_client_errors_are_not_retried(tmp_path: Path) -> None:
    with stub_api() as api:
        api.script(
            "/api/v1/namespaces/x", (422, {"kind": "Status", "reason": "Invalid", "message": "bad"}, {})
        )
        kc = stub_client(api, tmp_path, [])
        assert kc.request("GET", "/api/v1/namespaces/x")[0] == 422
    assert len(api.requests) == 1


def test_unreachable_server(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = StubApi(f"http://127.0.0.1:{port}")  # nothing listens there
    delays: list[float] = []
    kc = stub_client(api, tmp_path, delays, attempts=2)
    with pytest.raises(ApiError) as e:
        kc.version()
    assert e.value.status == 0
    assert str(e.value).startswith(f"/version: cannot reach the Kubernetes API at http://127.0.0.1:{port}: ")
    assert len(delays) == 1


def test_non_json_answer_is_a_clear_error(tmp_path: Path) -> None:
    with stub_api() as api:
        api.script("/version", (200, "just a string", {}))
        kc = stub_client(api, tmp_path, [])
        with pytest.raises(ApiError, match=r"^GET /version: 200 BadResponse: response is not a JSON object$"):
            kc.version()
