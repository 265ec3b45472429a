"""Running a command in a pod: the ``Exec`` seam and its Kubernetes implementation.

Owns one thing: "run this argv in that container, give me exit code, stdout and
stderr, or tell me clearly why it could not run". Everything that executes
commands in application pods — backup hooks (freeze/thaw, dumps), restore
hooks (load a dump), drill verification steps — talks only to the ``Exec``
protocol, so its logic is tested with a small explicit fake; ``KubernetesExec``
is the real one, over the ``pods/exec`` websocket API of the kubernetes client
(``kubernetes.stream``), what ``kubectl exec`` uses.

Large outputs and inputs are streamed: ``stdout_sink`` receives stdout as it
arrives (a database dump goes straight into the repository, never whole into
memory) and ``stdin`` may be an iterator of chunks (a dump read back from the
repository). Without a sink, each of stdout and stderr is kept up to
``MAX_OUTPUT`` bytes.

Why not the client's one-shot ``stream(...)`` call: it cannot report the exit
code (it returns only the text), it mixes stdout and stderr, and it decodes
bytes as text. We keep the websocket open (``_preload_content=False``), read
the channels ourselves until the server closes the connection or the timeout
passes, and read the exit code from the error channel's ``Status``.

End of input: only the ``v5.channel.k8s.io`` protocol (Kubernetes 1.30+) can
tell the command that stdin is finished; on older servers a command that reads
stdin to EOF waits until the timeout, which is then reported as such.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import yaml
from kubernetes import client as kclient
from kubernetes.stream import stream, ws_client
from kubernetes.stream.ws_client import ERROR_CHANNEL, STDERR_CHANNEL, STDOUT_CHANNEL, WSClient
from websocket import WebSocket, WebSocketException, WebSocketTimeoutException

from dr.errors import DrError
from dr.kube.client import KubeClient

# Output kept per stream when no sink is given: hooks and verification compare
# small outputs; a runaway command must not fill dr's memory.
MAX_OUTPUT = 1 << 20
# Seconds the close frame may take to send at the end of an exec.
CLOSE_TIMEOUT = 1.0
# Socket timeout for connecting (the handshake) in this thread's current exec;
# None elsewhere (port-forwards and other users of the client stay unchanged).
_CONNECT_TIMEOUT: ContextVar[float | None] = ContextVar("dr_exec_connect_timeout", default=None)

# Websocket frames for stdin: large enough to be cheap, small enough that the
# server's output is drained between frames (no deadlock when the command
# writes while it reads).
STDIN_FRAME = 256 << 10

Stdin = bytes | Iterable[bytes] | None
Sink = Callable[[bytes], None]


@dataclass(frozen=True)
class ExecResult:
    """How a command ended. ``stdout`` is empty when it went to a ``stdout_sink``."""

    exit_code: int
    stdout: bytes
    stderr: bytes


class ExecError(DrError):
    """The command could not be run or did not finish (pod gone, exec not served, timeout)."""


class ExecTimeout(ExecError):
    """The command was still running when its timeout passed."""


class Exec(Protocol):
    """Run ``command`` in ``container`` (None: the pod's default container) of ``namespace/pod``.

    ``stdin`` (bytes or chunks) is fed to the command and then closed; with
    ``stdout_sink`` stdout is handed over chunk by chunk as it arrives instead
    of being returned. Raises ``ExecTimeout`` after ``timeout`` seconds and
    ``ExecError`` when the command cannot be started; a command that ran and
    failed is an ``ExecResult`` with its exit code.
    """

    def run(
        self,
        namespace: str,
        pod: str,
        container: str | None,
        command: list[str],
        timeout: float,
        stdin: Stdin = None,
        stdout_sink: Sink | None = None,
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


def stdin_chunks(stdin: Stdin, frame: int = STDIN_FRAME) -> Iterator[bytes]:
    """``stdin`` as non-empty chunks of at most ``frame`` bytes."""
    if stdin is None:
        return
    pieces: Iterable[bytes] = [bytes(stdin)] if isinstance(stdin, bytes | bytearray | memoryview) else stdin
    for piece in pieces:
        view = memoryview(piece)
        for start in range(0, len(view), frame):
            yield bytes(view[start : start + frame])


def describe_target(namespace: str, pod: str, container: str | None) -> str:
    return f"pod {namespace}/{pod}" + (f" container {container}" if container else "")


class _Collector:
    """Where the output channels go: a sink for stdout if given, else bounded buffers."""

    def __init__(self, stdout_sink: Sink | None) -> None:
        self.sink = stdout_sink
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.received = 0
        # An exception raised by the caller's sink or stdin (the repository
        # failed), which must pass through as it is, not as "connection lost".
        self.caller_error: BaseException | None = None

    def feed(self, stdin: Stdin) -> Iterator[bytes]:
        chunks = stdin_chunks(stdin)
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except BaseException as e:
                self.caller_error = e
                raise
            yield chunk

    def drain(self, ws: WSClient) -> None:
        out = ws.read_channel(STDOUT_CHANNEL)
        if out:
            self.received += len(out)
            if self.sink is not None:
                try:
                    self.sink(bytes(out))
                except BaseException as e:
                    self.caller_error = e
                    raise
            else:
                self.stdout += out[: MAX_OUTPUT - len(self.stdout)]
        err = ws.read_channel(STDERR_CHANNEL)
        if err:
            self.received += len(err)
            self.stderr += err[: MAX_OUTPUT - len(self.stderr)]

    def pump(self, ws: WSClient, rounds: int = 256) -> None:
        """Read whatever output is already waiting (one frame per update) without blocking.

        Between stdin frames: a command that writes while it reads must not
        stall on a full output pipe while we wait to send it more input.
        """
        for _ in range(rounds):
            if not ws.is_open():
                return
            before = self.received
            ws.update(timeout=0)
            self.drain(ws)
            if self.received == before:
                return


class KubernetesExec:
    """``Exec`` over the API server's ``pods/exec`` websocket."""

    def __init__(self, api: kclient.ApiClient | KubeClient) -> None:
        # Clients of its own (see ``_core``): ``stream`` swaps the ApiClient's request
        # method while it connects, which must not race with other calls on a shared one.
        base = api.api_client if isinstance(api, KubeClient) else api
        self._configuration = base.configuration
        self._headers = dict(base.default_headers)

    def _core(self) -> kclient.CoreV1Api:
        # One ApiClient per call: hooks of several pods may run from several threads.
        api = kclient.ApiClient(self._configuration)
        for k, v in self._headers.items():
            api.set_default_header(k, v)
        return kclient.CoreV1Api(api)

    def run(
        self,
        namespace: str,
        pod: str,
        container: str | None,
        command: list[str],
        timeout: float,
        stdin: Stdin = None,
        stdout_sink: Sink | None = None,
    ) -> ExecResult:
        where = describe_target(namespace, pod, container)
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
        core = self._core()
        # One budget for connecting, sending stdin and waiting for the end.
        deadline = time.monotonic() + timeout
        try:
            token = _CONNECT_TIMEOUT.set(timeout)
            try:
                ws = stream(core.connect_get_namespaced_pod_exec, pod, namespace, **kwargs)
            except (kclient.ApiException, AttributeError) as e:
                raise _connect_error(e, where, timeout) from None
            except (WebSocketException, OSError) as e:
                raise _connection_error(e, where, timeout) from None
            finally:
                _CONNECT_TIMEOUT.reset(token)
            try:
                return self._converse(ws, where, timeout, stdin, _Collector(stdout_sink), deadline)
            finally:
                try:
                    # The close frame must not wait on a peer that stopped reading.
                    ws.sock.settimeout(CLOSE_TIMEOUT)
                    ws.close()
                except (WebSocketException, OSError):
                    pass
        finally:
            core.api_client.close()

    @staticmethod
    def _converse(
        ws: WSClient, where: str, timeout: float, stdin: Stdin, out: _Collector, deadline: float
    ) -> ExecResult:
        # A dropped connection (API server restarted, node gone, proxy idle
        # timeout) surfaces from the websocket library as its own exceptions or
        # as OSError; callers handle ExecError only, and a hook that escapes
        # them would skip the post hooks that thaw the application.
        try:
            return KubernetesExec._converse_on(ws, where, timeout, stdin, out, deadline)
        except (WebSocketException, OSError) as e:
            if e is out.caller_error:
                raise
            raise _connection_error(e, where, timeout) from None

    @staticmethod
    def _converse_on(
        ws: WSClient, where: str, timeout: float, stdin: Stdin, out: _Collector, deadline: float
    ) -> ExecResult:

        def check_deadline() -> None:
            if time.monotonic() >= deadline:
                raise ExecTimeout(f"command in {where} did not finish within {timeout:g}s")

        if stdin is not None:
            for chunk in out.feed(stdin):
                check_deadline()
                if not ws.is_open():
                    break  # the command ended without reading everything; its status says how
                # A command that does not read its stdin fills the socket buffers and
                # the write blocks: bounded by what is left of the budget.
                ws.sock.settimeout(max(deadline - time.monotonic(), 0.001))
                ws.write_stdin(chunk)
                out.pump(ws)
            if ws.is_open():
                ws.close_channel(0)
        while ws.is_open():
            check_deadline()
            ws.update(timeout=min(max(deadline - time.monotonic(), 0.0), 1.0))
            out.drain(ws)
        out.drain(ws)
        code = exit_code_from_status(ws.read_channel(ERROR_CHANNEL))
        return ExecResult(code, bytes(out.stdout), bytes(out.stderr))


def _connect_error(err: BaseException, where: str, timeout: float) -> ExecError:
    """What ``stream`` raised while connecting, as an ``ExecError``.

    ``kubernetes.stream`` turns every exception of the connection into an
    ``ApiException(status=0)`` — an interrupt (Ctrl-C, SIGTERM) and a timeout
    too. The original is the exception's context: an interrupt is raised
    again (it must unwind, not become a failed hook), a timeout is an
    ``ExecTimeout``.
    """
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, KeyboardInterrupt):
            raise cause
        if isinstance(cause, WebSocketTimeoutException | TimeoutError):
            return ExecTimeout(f"cannot exec into {where}: no answer within {timeout:g}s")
        cause = cause.__context__
    return ExecError(f"cannot exec into {where}: {_handshake_reason(err)}")


def _connection_error(err: BaseException, where: str, timeout: float) -> ExecError:
    """An ``ExecError`` for a websocket or socket failure (``ExecTimeout`` for a socket timeout).

    Names only the exception's type and text: the websocket library's messages
    hold no request headers (the bearer token travels there).
    """
    if isinstance(err, WebSocketTimeoutException | TimeoutError):
        return ExecTimeout(f"command in {where} did not finish within {timeout:g}s")
    text = str(err).strip()
    return ExecError(f"connection to {where} lost: {type(err).__name__}" + (f": {text}" if text else ""))


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


class _TimedWebSocket(WebSocket):
    """The client's ``WebSocket``, connecting with the current exec's timeout.

    ``kubernetes.stream`` creates the websocket and connects it without a
    timeout (``create_websocket``): an API server or proxy that accepts the
    TCP connection and never answers the upgrade held a hook forever, past
    its timeout. The class is looked up in ``ws_client``'s globals at each
    connection, hence the replacement there; without ``_CONNECT_TIMEOUT`` set
    it behaves exactly like the original.
    """

    def connect(self, url: str, **options: Any) -> None:
        timeout = _CONNECT_TIMEOUT.get()
        if timeout is not None:
            options.setdefault("timeout", timeout)
        super().connect(url, **options)


ws_client.WebSocket = _TimedWebSocket
