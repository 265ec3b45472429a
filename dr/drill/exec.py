"""Running a command in a pod: the ``Exec`` seam and its Kubernetes implementation.

Owns one thing: "run this argv in that container, give me exit code, stdout and
stderr, or tell me clearly why it could not run". Drill steps (``exec``) talk
only to the ``Exec`` protocol, so their logic is tested with a small explicit
fake; ``KubernetesExec`` is the real one, over the ``pods/exec`` websocket API
of the kubernetes client (``kubernetes.stream``).

Why not the client's one-shot ``stream(...)`` call: it cannot report the exit
code (it returns only the text), it mixes stdout and stderr, and it decodes
bytes as text. We keep the websocket open (``_preload_content=False``), read
the channels ourselves until the server closes the connection or the timeout
passes, and read the exit code from the error channel's ``Status``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import yaml
from kubernetes import client as kclient
from kubernetes.stream import stream
from kubernetes.stream.ws_client import ERROR_CHANNEL, STDERR_CHANNEL, STDOUT_CHANNEL

from dr.errors import DrError

# Output kept per stream: verification compares small outputs; a runaway
# command must not fill the drill's memory.
MAX_OUTPUT = 1 << 20


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


class ExecError(DrError):
    """The command could not be run (pod gone, exec not served, timeout): not a verdict on its output."""


class Exec(Protocol):
    def run(
        self,
        namespace: str,
        pod: str,
        container: str | None,
        command: list[str],
        timeout: float,
        stdin: bytes | None = None,
    ) -> ExecResult: ...


def exit_code_from_status(raw: Any) -> int:
    """The exit code in the error channel's ``Status`` (``Success``, or ``NonZeroExitCode`` with a cause)."""
    status = yaml.safe_load(raw) if isinstance(raw, str | bytes) else raw
    if not isinstance(status, dict):
        raise ExecError(f"exec ended without a status (got {raw!r:.200})")
    if status.get("status") == "Success":
        return 0
    details = status.get("details") or {}
    for cause in details.get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message", ""))
            except ValueError:
                break
    # Failure without an exit code: the command did not start (no such
    # executable, container not running, …). The message says which.
    raise ExecError(f"command did not run: {status.get('message') or status.get('reason') or status}")


class KubernetesExec:
    """``Exec`` over the API server's ``pods/exec`` websocket (what ``kubectl exec`` uses)."""

    def __init__(self, api: kclient.ApiClient) -> None:
        # A client of its own: ``stream`` swaps the ApiClient's request method
        # while it connects, which must not race with other calls on a shared one.
        self._api = kclient.ApiClient(api.configuration)

    def close(self) -> None:
        self._api.close()

    def run(
        self,
        namespace: str,
        pod: str,
        container: str | None,
        command: list[str],
        timeout: float,
        stdin: bytes | None = None,
    ) -> ExecResult:
        where = f"pod {namespace}/{pod}" + (f" container {container}" if container else "")
        core = kclient.CoreV1Api(self._api)
        kwargs: dict[str, Any] = {
            "command": command,
            "stdin": stdin is not None,
            "stdout": True,
            "stderr": True,
            "tty": False,
            "_preload_content": False,
            "_request_timeout": timeout,
            "binary": True,
        }
        if container:
            kwargs["container"] = container
        try:
            ws = stream(core.connect_get_namespaced_pod_exec, pod, namespace, **kwargs)
        except (kclient.ApiException, AttributeError) as e:
            raise ExecError(f"cannot exec into {where}: {_handshake_reason(e)}") from None
        try:
            if stdin is not None:
                ws.write_stdin(stdin)
                # Only the v5 protocol can signal end of input; on older
                # servers a command that reads stdin to EOF runs into the timeout.
                ws.close_channel(0)
            stdout, stderr = bytearray(), bytearray()
            deadline = time.monotonic() + timeout
            while ws.is_open():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ExecError(f"command in {where} did not finish within {timeout:g}s")
                ws.update(timeout=min(left, 1.0))
                stdout += ws.read_channel(STDOUT_CHANNEL)[: MAX_OUTPUT - len(stdout)]
                stderr += ws.read_channel(STDERR_CHANNEL)[: MAX_OUTPUT - len(stderr)]
            stdout += ws.read_channel(STDOUT_CHANNEL)[: MAX_OUTPUT - len(stdout)]
            stderr += ws.read_channel(STDERR_CHANNEL)[: MAX_OUTPUT - len(stderr)]
            code = exit_code_from_status(ws.read_channel(ERROR_CHANNEL))
            return ExecResult(code, bytes(stdout), bytes(stderr))
        finally:
            ws.close()


def _handshake_reason(err: BaseException) -> str:
    # ``stream`` wraps websocket handshake failures as ApiException(status=0)
    # whose reason holds "Handshake status 404 Not Found -+-+- {headers} -+-+- body".
    # The client then trips over the exception's empty body (AttributeError
    # in ApiClient.__call_api), so the ApiException may be the context.
    e = err if isinstance(err, kclient.ApiException) else err.__context__
    if not isinstance(e, kclient.ApiException):
        raise err
    reason = str(e.reason or e)
    head = reason.split(" -+-+- ", 1)[0]
    if "Handshake status 404" in head:
        return "the API server does not serve pods/exec for it (404: pod or exec endpoint not found)"
    if "Handshake status 403" in head:
        return "forbidden (403): the identity may not create pods/exec in this namespace"
    if "Handshake status 401" in head:
        return "unauthorized (401): check the kubeconfig's credentials"
    return head.strip() or f"HTTP {e.status}"
