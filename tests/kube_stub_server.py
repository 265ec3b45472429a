"""A tiny HTTP server that answers like a sick API server, for failures the test cluster cannot produce.

The real test cluster never answers 503 or 429 and has no aggregated APIs whose
backends are down; to test retries and tolerant discovery we need a server
that does. This is a real HTTP server on loopback (the kubernetes client and
urllib3 run unmodified against it); each test scripts its answers per path.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

Answer = tuple[int, Any, dict[str, str]]  # status, JSON body, headers


@dataclass
class StubApi:
    url: str
    # path -> answers in order; the last one repeats.
    answers: dict[str, list[Answer]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(
        default_factory=list
    )  # method, path, headers (lower-case)

    def script(self, path: str, *answers: Answer) -> None:
        self.answers[path] = list(answers)

    def kubeconfig(self, directory: Path, token: str = "stub-token") -> str:
        path = directory / "stub.kubeconfig"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "stub",
                    "clusters": [{"name": "stub", "cluster": {"server": self.url}}],
                    "users": [{"name": "stub", "user": {"token": token}}],
                    "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
                }
            )
        )
        return str(path)


@contextmanager
def stub_api() -> Iterator[StubApi]:
    state: dict[str, StubApi] = {}

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            api = state["api"]
            path = self.path.split("?", 1)[0]
            api.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            queue = api.answers.get(path)
            if not queue:
                status, body, headers = (
                    404,
                    {"kind": "Status", "reason": "NotFound", "message": "no such path"},
                    {},
                )
            else:
                status, body, headers = queue.pop(0) if len(queue) > 1 else queue[0]
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["api"] = StubApi(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["api"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
