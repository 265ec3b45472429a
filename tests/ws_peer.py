"""A loopback server that answers the ``pods/exec`` websocket upgrade and then misbehaves.

The test cluster does not serve ``pods/exec``, so failures in the middle of an
exec (a connection that drops, a command that never reads its stdin, an API
server that accepts the connection but never answers the upgrade) need a peer
that produces them. This is a real TCP server on loopback: the kubernetes
client and the websocket library run unmodified against it.

Modes:

* ``drop``: complete the upgrade, then close the connection without a status.
* ``noread``: complete the upgrade, shrink the receive buffer, never read again
  (the client's writes block once the socket buffers are full).
* ``nohandshake``: accept the TCP connection, never answer.
* ``output``: complete the upgrade, send one stdout frame (``OUTPUT``), then
  neither read nor end (the command still runs).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from kubernetes import client as kclient

Mode = Literal["drop", "noread", "nohandshake", "output"]
OUTPUT = b"the start of a dump"
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _handshake(conn: socket.socket) -> None:
    request = b""
    while b"\r\n\r\n" not in request:
        data = conn.recv(4096)
        if not data:
            return
        request += data
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key")
    )
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n"
    )


@dataclass
class Peer:
    api: kclient.ApiClient  # a client of the peer
    url: str
    accepted: threading.Event  # set once a client connected


@contextmanager
def ws_peer(mode: Mode) -> Iterator[Peer]:
    """A peer in ``mode``; the server and its connections close on exit."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()
    accepted = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            accepted.set()
            if mode == "nohandshake":
                continue
            _handshake(conn)
            if mode == "drop":
                conn.close()
            elif mode == "output":
                payload = b"\x01" + OUTPUT  # channel 1: stdout
                conn.sendall(bytes([0x82, len(payload)]) + payload)  # one unmasked binary frame
            else:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    cfg = kclient.Configuration()
    cfg.host = f"http://127.0.0.1:{server.getsockname()[1]}"
    api = kclient.ApiClient(cfg)
    try:
        yield Peer(api, cfg.host, accepted)
    finally:
        stop.set()
        # shutdown before close: a close alone wakes neither the thread's accept nor its
        # recv (each test waited out the join's 5 s).
        for sock in (server, *held):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        thread.join(5)
        api.close()
