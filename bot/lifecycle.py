"""Running the HTTP server with bounded resources, and stopping it cleanly.

`make_server` caps what one client can hold: the body size (waitress refuses a larger Content-Length
with a 413 before reading the body; its default was 1 GiB, spooled to disk), the number of open
connections (more wait in the kernel's listen backlog), idle keep-alive connections, and the whole time
one request may take to arrive. waitress only has an *idle* timeout, which a client trickling one byte a
second never trips, so `_BoundedServer` also closes a connection whose request is still incomplete after
`request_timeout` seconds (checked by waitress' own maintenance pass, every `cleanup_interval`).

waitress' `server.run()` loops while its socket map is non-empty, and `server.close()` from another
thread removes only the listening socket: an idle keep-alive connection (Slack and load balancers keep
them) stays in the map and `run()` never returns. `HttpLoop` runs the same asyncore loop one poll at a
time, checks a stop flag, and closes every channel from the loop's own thread once asked to stop.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

log = logging.getLogger("plate.lifecycle")


@dataclass(frozen=True)
class HttpLimits:
    max_body: int = 256 * 1024  # Slack payloads are a few KB
    connections: int = 100
    idle_timeout: int = 60  # an idle keep-alive connection is closed after this many seconds
    request_timeout: float = 10.0  # from a request's first byte to its last


class _BoundedServer(TcpWSGIServer):
    """waitress' TCP server plus a deadline on incomplete requests (slow headers or body), and hung-up
    connections released at once rather than after the idle timeout (they count against the limit)."""

    request_timeout = 10.0

    def maintenance(self, now: float) -> None:
        super().maintenance(now)
        for channel in list(self.active_channels.values()):
            if not channel.connected and not channel.requests:
                channel.will_close = True  # the client hung up: waitress would keep it until idle_timeout
                continue
            parser = channel.request  # the request being received; None between requests
            if parser is None:
                continue
            first_seen = getattr(parser, "plate_first_seen", None)
            if first_seen is None:
                parser.plate_first_seen = now
            elif now - first_seen > self.request_timeout and not channel.will_close:
                log.info("closed a connection whose request took too long to arrive")
                channel.will_close = True


def make_server(app: Any, host: str, port: int, *, threads: int = 8, limits: HttpLimits | None = None) -> Any:
    """A waitress server for `app` on host:port with plate-bot's limits (serve it with `HttpLoop`)."""
    limits = limits or HttpLimits()
    adj = Adjustments(
        host=host,
        port=port,
        threads=threads,
        ident="plate-bot",
        max_request_body_size=limits.max_body + 1,  # waitress refuses a Content-Length >= this
        connection_limit=limits.connections,
        channel_timeout=limits.idle_timeout,
        cleanup_interval=1,  # how often maintenance (idle and request deadlines) runs
    )
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    server = _BoundedServer(app, map={}, dispatcher=dispatcher, adj=adj, sockinfo=adj.listen[0])
    server.request_timeout = limits.request_timeout
    return server


class HttpLoop:
    def __init__(self, server: Any) -> None:
        self.server = server
        self._stop = threading.Event()
        self._done = threading.Event()

    def run(self) -> None:
        """Serve in the calling thread until `stop()`."""
        adj, channels = self.server.adj, self.server._map
        try:
            while not self._stop.is_set():
                wasyncore.loop(timeout=adj.asyncore_loop_timeout, map=channels, use_poll=adj.asyncore_use_poll, count=1)
        finally:
            self.server.task_dispatcher.shutdown(timeout=5)
            wasyncore.close_all(self.server._map)
            self._done.set()

    def stop(self, timeout: float = 10.0) -> bool:
        """Ask the loop to end, wake it, and wait; False if it did not end in time."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self.server.pull_trigger()  # wakes the poll at once instead of at its 1 s timeout
        return self._done.wait(timeout)


def drain_executor(executor: Executor, timeout: float) -> bool:
    """Let queued and running listener tasks finish (they post cards, enqueue jobs); False on timeout."""
    waiter = threading.Thread(target=executor.shutdown, kwargs={"wait": True}, daemon=True)
    waiter.start()
    waiter.join(max(timeout, 0.0))
    return not waiter.is_alive()


def remaining(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.0)
