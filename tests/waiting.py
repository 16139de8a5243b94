"""The one way tests wait for something to happen: poll a condition until it holds or a deadline passes.

Bolt answers before its listeners run, jobs run in other processes and watchers in threads, so most
end-to-end assertions are "eventually". Every test waits through `wait_until`; nothing else polls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
POLL = 0.02  # seconds between two checks


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    what: str = "condition",
    *,
    diagnose: Callable[[], object] | None = None,
    interval: float = POLL,
) -> T:
    """Call `predicate` until it returns something truthy, and return that.

    It is always called at least once, and once more at the deadline. After `timeout` seconds without a
    truthy value: AssertionError naming `what`, followed by `diagnose()`'s output when given (the fake
    Slack's calls, a process's log...). An exception raised by `predicate` ends the wait at once (a
    predicate fails early that way, e.g. when the process it waits on has died)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            message = f"timed out after {timeout:g}s waiting for {what}"
            if diagnose is not None:
                message += f"\n{diagnose()}"
            raise AssertionError(message)
        time.sleep(min(interval, left))
