"""Running and stopping the HTTP server cleanly.

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
from typing import Any

from waitress import wasyncore

log = logging.getLogger("plate.lifecycle")


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
