"""One connection to one cluster: authentication, raw JSON requests, retries.

``connect`` loads a kubeconfig (path and context, ``$KUBECONFIG`` or
``~/.kube/config``) or the in-cluster service-account configuration through
the official ``kubernetes`` client, so every auth method it supports (tokens,
client certificates, exec plugins, token refresh) works unchanged.

Requests then bypass the generated API classes: ``KubeClient.request`` sends
bytes through the client's own urllib3 pool (with its TLS settings and auth
headers) and returns the status and raw body. Backup and restore move
thousands of objects as plain dicts; deserialising them into generated models
and back would cost more than the HTTP round trip, and would drop fields of
types the client does not know (custom resources, newer API versions).

Transient failures (connection errors, 429, 5xx) are retried with exponential
backoff (honouring ``Retry-After``); everything else is returned to the caller
or raised as ``ApiError`` with the server's ``Status`` reason and message.
Request and response bodies are never logged: they contain Secrets.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import urllib3
from kubernetes import client as kclient
from kubernetes import config as kconfig
from kubernetes.config.config_exception import ConfigException

from dr import __version__
from dr.errors import DrError, InvalidInput
from dr.urls import is_http_url, redact_url

log = logging.getLogger(__name__)

# Enough concurrent requests to keep a 2-core client busy while the API
# server works; restore and discovery use thread pools of at most this size.
DEFAULT_POOL_SIZE = 16
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

# urllib3 retries only failed connection attempts itself; status codes (and their
# Retry-After) and dropped connections are retried by ``KubeClient.request``, with
# backoff and a bound on the total attempts.
_URLLIB3_RETRIES = urllib3.Retry(
    total=2,
    connect=2,
    read=0,
    redirect=0,
    status=0,
    other=0,
    respect_retry_after_header=False,
    raise_on_status=False,
)

Query = Mapping[str, str | int] | Sequence[tuple[str, str | int]] | None

# How long ``KubeClient.probe`` waits for the API server to answer at all before a command
# gives up on it (module-level: tests shorten it).
PROBE_SECONDS = 15.0
# (connect, read) seconds for calls through the generated API classes (``_request_timeout``),
# which otherwise wait for ever on a server that stops answering.
REQUEST_TIMEOUT = (10.0, 30.0)


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried: ``attempts`` tries in all, delays doubling."""

    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 5.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), self.max_delay)
            except ValueError:
                pass
        # Full jitter: many workers hitting a recovering server should not retry in lockstep.
        return float(random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt)))


class ApiError(DrError):
    """A request the API server answered with an error (or could not be reached: status 0)."""

    def __init__(self, method: str, path: str, status: int, reason: str, message: str) -> None:
        self.method, self.path, self.status, self.reason = method, path, status, reason
        self.server_message = message
        super().__init__(f"{method} {path}: {status} {reason}: {message}" if status else f"{path}: {message}")

    @property
    def short(self) -> str:
        """``403 Forbidden: <server message>`` — for per-item reports that already name the object."""
        text = f"{self.status} {self.reason}: {self.server_message}" if self.status else self.server_message
        return " ".join(text.split())  # one line, whatever the server's message holds

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def already_exists(self) -> bool:
        return self.status == 409 and self.reason == "AlreadyExists"


def error_from_response(method: str, path: str, status: int, data: bytes) -> ApiError:
    reason, message = "", ""
    try:
        doc = json.loads(data)
        if isinstance(doc, dict):
            reason, message = str(doc.get("reason") or ""), str(doc.get("message") or "")
    except ValueError:
        pass
    if not message:
        message = data[:300].decode("utf-8", "replace").strip() or "(empty response)"
    return ApiError(method, path, status, reason or _REASONS.get(status, "Error"), message)


_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class KubeClient:
    """Raw JSON access to one API server. Thread-safe; ``close()`` when done."""

    def __init__(
        self,
        api_client: kclient.ApiClient,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_client = api_client
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._sleep = sleep
        self._host = str(api_client.configuration.host).rstrip("/")
        # The server's /version document, once asked (``probe`` reads it too: not asked twice).
        self._version: dict[str, Any] | None = None

    @property
    def host(self) -> str:
        return self._host

    def close(self) -> None:
        self.api_client.close()

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ requests

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {str(k): str(v) for k, v in self.api_client.default_headers.items()}
        headers["Accept"] = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        # Adds "authorization: Bearer …", refreshing expiring tokens through the configuration's hook.
        self.api_client.update_params_for_auth(headers, [], ["BearerToken"])
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Query = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        """Send one request (retrying transient failures) and return ``(status, body)``.

        ``body`` is JSON-encoded unless it is already ``bytes``. Raises ``ApiError``
        with status 0 only when the server cannot be reached after all attempts.
        """
        url = self._host + path
        if query:
            url += "?" + urlencode(query)
        payload = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        pool = self.api_client.rest_client.pool_manager
        read_timeout = timeout or self.timeout
        last_error = ""
        for attempt in range(self.retry.attempts):
            headers = self._headers(content_type if payload is not None else None)
            try:
                resp = pool.request(
                    method,
                    url,
                    body=payload,
                    headers=headers,
                    timeout=urllib3.Timeout(connect=10.0, read=read_timeout),
                    preload_content=True,
                    retries=_URLLIB3_RETRIES,
                )
            except urllib3.exceptions.HTTPError as e:
                last_error = f"cannot reach the Kubernetes API at {self._host}: {e}"
                log.debug("%s %s: attempt %d: %s", method, path, attempt + 1, e)
                if attempt + 1 < self.retry.attempts:
                    self._sleep(self.retry.delay(attempt))
                continue
            status = int(resp.status)
            log.debug("%s %s -> %d", method, path, status)
            if status in RETRY_STATUSES and attempt + 1 < self.retry.attempts:
                self._sleep(self.retry.delay(attempt, resp.headers.get("Retry-After")))
                continue
            return status, bytes(resp.data)
        raise ApiError(method, path, 0, "ConnectionError", last_error)

    def probe(self) -> None:
        """Raise ``DrError`` when the API server does not answer at all within about
        ``PROBE_SECONDS``: a wrong address, a firewall that drops packets, a server or proxy that
        accepts connections and never speaks; or when it rejects the credentials (401). Any other
        HTTP answer, 403 too (``/version`` may be closed to an identity), is an answer.

        Commands call it once before their work: each request's own retries wait up to ~50 s on
        such a server, and a command makes many (an Event after the failure, too).
        """
        deadline = time.monotonic() + PROBE_SECONDS
        pool = self.api_client.rest_client.pool_manager
        error: urllib3.exceptions.HTTPError | None = None
        for attempt in range(self.retry.attempts):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                resp = pool.request("GET", self._host + "/version", headers=self._headers(None), preload_content=True,
                                    timeout=urllib3.Timeout(connect=min(remaining, 10.0), read=min(remaining, 10.0)),
                                    retries=_URLLIB3_RETRIES)  # fmt: skip
                if resp.status == 401:
                    # Every request would say the same (and the run's failure Event a second time).
                    raise DrError(f"the Kubernetes API at {self._host} rejected the credentials (401 Unauthorized): "
                                  "check the kubeconfig's user (token expired or for another cluster?)")  # fmt: skip
                if resp.status == 200:
                    with contextlib.suppress(ValueError):
                        doc = json.loads(resp.data)
                        self._version = doc if isinstance(doc, dict) else None
                return
            except urllib3.exceptions.HTTPError as e:
                error = e
                log.debug("GET /version: attempt %d: %s", attempt + 1, e)
            delay = self.retry.delay(attempt)
            if time.monotonic() + delay >= deadline:
                break
            self._sleep(delay)
        why = _unreachable_reason(error) if error else f"no answer within {PROBE_SECONDS:g}s"
        raise DrError(f"cannot reach the Kubernetes API at {self._host}: {why}")

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Query = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send one request and return the JSON object it answered; ``ApiError`` on any error status."""
        status, data = self.request(
            method, path, query=query, body=body, content_type=content_type, timeout=timeout
        )
        if not 200 <= status < 300:
            raise error_from_response(method, path, status, data)
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise ApiError(method, path, status, "BadResponse", f"response is not JSON: {e}") from None
        if not isinstance(doc, dict):
            raise ApiError(method, path, status, "BadResponse", "response is not a JSON object")
        return doc

    def get(self, path: str, query: Query = None) -> dict[str, Any]:
        return self.call("GET", path, query=query)

    def version(self) -> dict[str, Any]:
        """The server's ``/version`` document (``gitVersion``, ``major``, ``minor``, …)."""
        if self._version is None:
            self._version = self.get("/version")
        return self._version


def _unreachable_reason(e: urllib3.exceptions.HTTPError) -> str:
    """A short why for an API server that could not be asked (urllib3's own text repeats the host
    and wraps the cause twice)."""
    cause = e.reason if isinstance(e, urllib3.exceptions.MaxRetryError) and e.reason is not None else e
    if isinstance(cause, urllib3.exceptions.NewConnectionError):  # before TimeoutError: a subclass of it
        return str(cause).rpartition("Failed to establish a new connection: ")[2] or str(cause)
    if isinstance(cause, urllib3.exceptions.TimeoutError):
        return f"no answer within {PROBE_SECONDS:g}s"
    return str(cause)


# --------------------------------------------------------------------------- connecting


def _default_kubeconfig() -> str | None:
    env = os.environ.get("KUBECONFIG")
    if env:
        return env
    home = Path("~/.kube/config").expanduser()
    return str(home) if home.exists() else None


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def _check_kubeconfig_file(path: str) -> dict[str, Any] | None:
    """The document of ``path``; ``InvalidInput`` naming it when it is missing, not YAML or not a mapping.

    The kubernetes client lets yaml's multi-line ParserError, or a TypeError,
    escape for those; an empty file (None) it refuses itself.
    """
    import yaml

    file = Path(path).expanduser()
    if file.is_dir():
        raise InvalidInput(f"kubeconfig {path}: is a directory, not a file")
    if not file.is_file():
        raise InvalidInput(
            f"kubeconfig {path}: {'is not a regular file' if file.exists() else 'file not found'}"
        )
    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as e:
        raise InvalidInput(f"kubeconfig {path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"kubeconfig {path}: not a text file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InvalidInput(f"kubeconfig {path}: not valid YAML ({where}{problem})") from None
    if doc is not None and not isinstance(doc, dict):
        raise InvalidInput(f"kubeconfig {path}: not a kubeconfig (a YAML mapping is expected)")
    return doc


def _kubeconfig_loader(option: str | None, path: str, context: str | None) -> tuple[Any, str]:
    """The client's ``KubeConfigLoader`` for ``--kubeconfig`` (``option``: one file) or else
    ``path``, ``$KUBECONFIG``'s list (merged by the client, files that do not exist skipped),
    and the file(s) it was read from, as messages name them.

    The client's own ``load_kube_config(config_file=…)`` splits any path on ':', so a
    ``--kubeconfig`` whose path holds one would be taken for two files; kubectl takes
    ``--kubeconfig`` as exactly one path (only the environment variable is a list).
    """
    from kubernetes.config.kube_config import KubeConfigLoader, KubeConfigMerger

    if option is None:
        # Like kubectl (and the client's loader), files that do not exist are skipped; only
        # none of them existing is an error.
        listed = [one for one in path.split(os.pathsep) if one]
        present = [one for one in listed if Path(one).expanduser().is_file()]
        if not present:
            # A directory is there, but no file: "file not found" sent people looking for a typo.
            folders = [one for one in listed if Path(one).expanduser().is_dir()]
            if folders == [path]:
                raise InvalidInput(f"kubeconfig {path}: is a directory, not a file")
            if folders:
                are = "is a directory, not a file" if len(folders) == 1 else "are directories, not files"
                raise InvalidInput(f"kubeconfig {path}: {', '.join(folders)} {are}")
            raise InvalidInput(f"kubeconfig {path}: file not found")
        # An empty file is no configuration, as for kubectl; the client's merger refused the list.
        filled = [one for one in present if _check_kubeconfig_file(one) is not None]
        shown = ", ".join(present)
        if not filled:
            raise InvalidInput(f"kubeconfig {shown}: has no contexts")
        merged = KubeConfigMerger(os.pathsep.join(filled)).config
        _check_context(_plain(merged), context, shown)
        return KubeConfigLoader(config_dict=merged, active_context=context), shown
    file = Path(option).expanduser()
    doc = _check_kubeconfig_file(option)
    _check_context(doc or {}, context, option)
    # Files it names (certificates, exec plugins' working directory) are relative to its folder.
    return KubeConfigLoader(
        config_dict=doc, config_base_path=str(file.parent), active_context=context
    ), option


def _plain(node: Any) -> Any:
    """A (merged) kubeconfig as plain data: the client's merger wraps it and its items in ``ConfigNode``s."""
    node = getattr(node, "value", node)
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _names(items: Any) -> list[str]:
    return (
        [str(i["name"]) for i in items if isinstance(i, dict) and "name" in i]
        if isinstance(items, list)
        else []
    )


def _check_context(doc: dict[str, Any], context: str | None, shown: str) -> None:
    """``InvalidInput`` in dr's words for the context to use: none there, an unknown one, or one
    whose cluster is not defined. The client says these as "Invalid kube-config file. Expected
    object with name X in <path>/contexts list" or "Expected key current-context in …"."""
    contexts = doc.get("contexts") or []
    if not isinstance(contexts, list):
        raise InvalidInput(f"kubeconfig {shown}: contexts is not a list")
    names = _names(contexts)
    if not names:
        raise InvalidInput(f"kubeconfig {shown}: has no contexts")
    listed = f"(contexts: {', '.join(names)})"
    if context is None:
        context = doc.get("current-context") or None
        if context is None:
            raise InvalidInput(f"kubeconfig {shown}: no current-context set and no --context given {listed}")
        if str(context) not in names:
            raise InvalidInput(
                f"kubeconfig {shown}: current-context {context!r} is not one of its contexts {listed}"
            )
    elif context not in names:
        raise InvalidInput(f"kubeconfig {shown}: no context {context!r} {listed}")
    chosen = next(c for c in contexts if isinstance(c, dict) and str(c.get("name")) == str(context))
    spec = chosen.get("context")
    cluster = spec.get("cluster") if isinstance(spec, dict) else None
    clusters = _names(doc.get("clusters"))
    if cluster is not None and str(cluster) not in clusters:
        raise InvalidInput(
            f"kubeconfig {shown}: context {str(context)!r} names cluster {str(cluster)!r}, which it does not "
            f"define (clusters: {', '.join(clusters) or 'none'})"
        )


def connect(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
    retry: RetryPolicy | None = None,
    timeout: float = 60.0,
) -> KubeClient:
    """Connect to the cluster of ``kubeconfig`` (``context`` or its current one).

    ``kubeconfig`` (``--kubeconfig``) is one path, ':' and all. Without it:
    ``$KUBECONFIG`` (a list; files that do not exist are skipped, as kubectl
    does), then ``~/.kube/config``, then
    the in-cluster service account (when running in a pod). Loading problems
    (missing file, unknown context, no configuration at all) raise
    ``InvalidInput`` naming the file and the reason; nothing is contacted yet.
    """
    cfg = kube_configuration(kubeconfig, context)
    cfg.connection_pool_maxsize = pool_size
    api_client = kclient.ApiClient(configuration=cfg)
    api_client.user_agent = f"dr/{__version__}"
    return KubeClient(api_client, retry=retry, timeout=timeout)


@contextmanager
def _plugin_errors() -> Iterator[list[str]]:
    """The errors the client library logs on the root logger while it runs a kubeconfig's exec
    credential plugin (a missing command, a plugin that exits non-zero or prints no token): it
    logs them and goes on without credentials, so the command would end on the server's 401 with
    the cause in a log line above it. Collected here (and kept out of the log) to be raised."""
    errors: list[str] = []

    def keep(record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            errors.append(" ".join(record.getMessage().split()))
            return False
        return True

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield errors
    finally:
        root.removeFilter(keep)


def kube_configuration(kubeconfig: str | None = None, context: str | None = None) -> kclient.Configuration:
    """The client configuration ``connect`` uses (same rules, same errors). An ``ApiClient`` of
    the generated API (the drill's service proxy and exec) shares the ``KubeClient``'s."""
    cfg = kclient.Configuration()
    path = kubeconfig or _default_kubeconfig()
    if path is None:
        if not _in_cluster():
            raise InvalidInput(
                "no Kubernetes configuration: pass --kubeconfig, set $KUBECONFIG or create "
                "~/.kube/config (or run inside a cluster)"
            )
        if context:
            raise InvalidInput(f"--context {context!r} needs a kubeconfig; none was found")
        try:
            kconfig.load_incluster_config(client_configuration=cfg)
        except ConfigException as e:
            raise InvalidInput(f"in-cluster Kubernetes configuration: {e}") from None
    else:
        shown = path
        try:
            loader, shown = _kubeconfig_loader(kubeconfig, path, context)
            with _plugin_errors() as plugin_errors:
                loader.load_and_set(cfg)
            if plugin_errors:
                raise InvalidInput(
                    f"kubeconfig {shown}: its exec credential plugin failed: {plugin_errors[0]}"
                )
        except ConfigException as e:
            raise InvalidInput(f"kubeconfig {shown}: {e}") from None
        except (OSError, ValueError) as e:
            raise InvalidInput(f"kubeconfig {shown}: cannot load: {e}") from None
        if not cfg.host:  # the client would only fail at the first request ("No host specified")
            if context is None:
                context = str(loader.current_context.get("name", ""))
            raise InvalidInput(f"kubeconfig {shown}: the cluster of context {context!r} has no server")
        if not is_http_url(cfg.host):
            # Else the first request fails (exit 1) with urllib3's "Failed to parse" or "No
            # connection adapters". Quoted redacted: a server URL may carry user:password@.
            if context is None:
                context = str(loader.current_context.get("name", ""))
            raise InvalidInput(
                f"kubeconfig {shown}: the cluster of context {context!r}: server {redact_url(cfg.host)!r} "
                f"{_server_problem(cfg.host)}"
            )
    return cfg


def _server_problem(server: str) -> str:
    """What is wrong with a cluster's ``server``, which ``is_http_url`` refused, for a message
    that quotes it (redacted) before: a port that is no number, else not the URL's shape."""
    try:
        parts = urlsplit(server)
    except ValueError:  # an unpaired '[' or ']'
        return "is not an http(s)://host[:port] URL"
    if parts.scheme in ("http", "https") and parts.hostname:
        try:
            _ = parts.port
        except ValueError:
            return "has a port that is not a number from 0 to 65535"
    return "is not an http(s)://host[:port] URL"
