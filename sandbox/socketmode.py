"""A Socket Mode endpoint on loopback: the WebSocket Slack hands out through `apps.connections.open`.

Just enough RFC 6455 for slack_sdk's built-in client (the one `slack_bolt`'s SocketModeHandler uses):
the HTTP upgrade with Sec-WebSocket-Accept, unmasked text frames to the client, masked frames from it,
ping/pong and close. On connect it sends Slack's `hello`; `send()` delivers an envelope (a slash command,
an interaction, an event) and the client's acks are collected by `envelope_id`.

    with FakeSocketMode() as ws, FakeSlack() as slack:
        slack.socket_mode_url = ws.url
        ...  # plate-bot serve --socket-mode
        eid = ws.send("slash_commands", {"command": "/plate", "text": "help", ...})
        ack = ws.wait_for_ack(eid)
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import socket
import struct
import threading
import time
from types import TracebackType
from typing import Any, Self

__all__ = ["FakeSocketMode"]

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _CLOSE, _PING, _PONG = 0x1, 0x8, 0x9, 0xA


def _accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()  # noqa: S324 - RFC 6455


def _frame(opcode: int, payload: bytes) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _read_frame(sock: socket.socket) -> tuple[int, bytes]:
    b0, b1 = _read_exact(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", _read_exact(sock, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", _read_exact(sock, 8))[0]
    mask = _read_exact(sock, 4) if b1 & 0x80 else b"\0\0\0\0"
    data = _read_exact(sock, n)
    return b0 & 0x0F, bytes(c ^ mask[i % 4] for i, c in enumerate(data))


class FakeSocketMode:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self._listener = socket.create_server((host, 0))
        self.url = f"ws://{host}:{self._listener.getsockname()[1]}/link/?ticket=fake"
        self.acks: dict[str, dict[str, Any]] = {}
        self.handshakes = 0
        self.closed_by_client = 0
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._ids = itertools.count(1)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="fake-socket-mode", daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, _t: type[BaseException] | None, _v: BaseException | None, _tb: TracebackType | None) -> None:
        self.stop()

    # --- what a test does ------------------------------------------------------------------------
    def wait_connected(self, timeout: float = 10.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self._conns, timeout):
                raise AssertionError("no Socket Mode client connected")

    def send(self, kind: str, payload: dict[str, Any]) -> str:
        """Deliver one envelope to the newest connection; returns its envelope_id."""
        envelope_id = f"env-{next(self._ids)}"
        envelope = {"envelope_id": envelope_id, "type": kind, "payload": payload, "accepts_response_payload": True}
        with self._lock:
            conn = self._conns[-1]
            conn.sendall(_frame(_TEXT, json.dumps(envelope).encode()))
        return envelope_id

    def wait_for_ack(self, envelope_id: str, timeout: float = 10.0) -> dict[str, Any]:
        with self._changed:
            if not self._changed.wait_for(lambda: envelope_id in self.acks, timeout):
                raise AssertionError(f"no ack for {envelope_id}")
            return self.acks[envelope_id]

    def wait_closed(self, timeout: float = 10.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self.closed_by_client > 0, timeout):
                raise AssertionError("the client did not close its connection")

    # --- the server ------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _addr = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            headers = {}
            for line in request.decode("latin-1").split("\r\n")[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            key = headers.get("sec-websocket-key", "")
            conn.sendall(
                (
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {_accept(key)}\r\n\r\n"
                ).encode()
            )
            hello = {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0PLATE"}}
            conn.sendall(_frame(_TEXT, json.dumps(hello).encode()))
            with self._changed:
                self.handshakes += 1
                self._conns.append(conn)
                self._changed.notify_all()
            self._frames(conn)
        except (ConnectionError, OSError):
            pass
        finally:
            with self._changed:
                if conn in self._conns:
                    self._conns.remove(conn)
                    self.closed_by_client += 1
                self._changed.notify_all()
            with contextlib.suppress(OSError):
                conn.close()

    def _frames(self, conn: socket.socket) -> None:
        while True:
            opcode, data = _read_frame(conn)
            if opcode == _PING:
                with self._lock:
                    conn.sendall(_frame(_PONG, data))
            elif opcode == _CLOSE:
                with self._lock, contextlib.suppress(OSError):
                    conn.sendall(_frame(_CLOSE, data[:2]))
                return
            elif opcode == _TEXT:
                message = json.loads(data.decode())
                if "envelope_id" in message:
                    with self._changed:
                        self.acks[message["envelope_id"]] = message
                        self._changed.notify_all()
            # pong and anything else: nothing to do
            time.sleep(0)
