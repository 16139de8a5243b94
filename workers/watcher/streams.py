"""List-then-watch threads, one per (cluster, kind, namespace), feeding one queue.

Each stream lists once (a `Sync` with every object), then watches from the list's resourceVersion and
forwards each change (`Change`). A watch that ends normally resumes from the last version seen; one that
breaks (connection dropped) resumes after a short backoff; 410 Gone means that version is compacted away,
so the stream lists again and the consumer diffs the new list against what it had. Other API errors
(403, the API down) back off exponentially up to `backoff_max`.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workers.errors import KubeError
from workers.kube import KubeGateway, WatchBroken, WatchExpired, WatchStream

log = logging.getLogger("plate.watch")
Obj = dict[str, Any]


@dataclass(frozen=True)
class StreamKey:
    context: str | None  # the kube context (cluster) the stream reads
    kind: str  # a workers.kube WATCHABLE name: pods, events, secrets, externalsecrets, …, helmsecrets
    namespace: str
    selector: str = ""  # more labels to match (helm's release records: which releases)


@dataclass(frozen=True)
class Sync:
    """A full list: the consumer replaces what it had for this stream."""

    key: StreamKey
    items: list[Obj]


@dataclass(frozen=True)
class Change:
    key: StreamKey
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj


Item = Sync | Change


def backoff(failures: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Exponential with full jitter: base * 2^(n-1), capped, times a random factor in [0.5, 1)."""
    return min(cap, base * 2 ** max(0, failures - 1)) * (0.5 + rand() / 2)


class Stream(threading.Thread):
    def __init__(
        self,
        key: StreamKey,
        kube: KubeGateway,
        out: queue.Queue[Item],
        *,
        timeout: int = 240,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        super().__init__(name=f"plate-watch-{key.kind}-{key.namespace}", daemon=True)
        self.key, self.kube, self.out = key, kube, out
        self.timeout, self.backoff_base, self.backoff_max = timeout, backoff_base, backoff_max
        self.stopped = threading.Event()
        self._current: WatchStream | None = None
        self._lock = threading.Lock()
        # Counters for tests and logs: how often the stream listed, resumed, and backed off.
        self.lists = self.resumes = self.failures_total = 0

    def run(self) -> None:
        version: str | None = None
        failures = 0
        while not self.stopped.is_set():
            try:
                if version is None:
                    items, version = self.kube.list_kind(self.key.kind, self.key.namespace, self.key.selector)
                    self.lists += 1
                    self.out.put(Sync(self.key, items))
                else:
                    self.resumes += 1
                version = self._watch(version)
                failures = 0
            except WatchExpired:
                log.info("watch expired (410 Gone); listing again", extra={"stream": self._label})
                version = None
            except WatchBroken as exc:
                failures += 1
                self._fail(failures, exc, quiet=True)
            except KubeError as exc:
                failures += 1
                self._fail(failures, exc, quiet=False)
            except Exception:
                failures += 1
                log.exception("watch stream failed", extra={"stream": self._label})
                self.stopped.wait(backoff(failures, self.backoff_base, self.backoff_max))

    @property
    def _label(self) -> str:
        return f"{self.key.context or 'in-cluster'}/{self.key.namespace}/{self.key.kind}"

    def _fail(self, failures: int, exc: KubeError, *, quiet: bool) -> None:
        self.failures_total += 1
        delay = backoff(failures, self.backoff_base, self.backoff_max)
        if exc.status in (403, 404):  # no permission, or the CRD is not installed: say so once, keep trying
            level = logging.WARNING if failures == 1 else logging.DEBUG
        else:
            level = logging.INFO if quiet and failures < 3 else logging.WARNING
        log.log(level, "watch failed, retrying in %.1fs: %s", delay, exc.message, extra={"stream": self._label})
        self.stopped.wait(delay)

    def _watch(self, version: str) -> str:
        key = self.key
        stream = self.kube.watch_kind(key.kind, key.namespace, version, self.timeout, key.selector)
        with self._lock:
            if self.stopped.is_set():
                return version
            self._current = stream
        try:
            for etype, obj in stream:
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if etype == "BOOKMARK":
                    version = str(rv or version)
                    continue
                if etype in ("ADDED", "MODIFIED", "DELETED"):
                    self.out.put(Change(self.key, etype, obj))
                    version = str(rv or version)
                if self.stopped.is_set():
                    break
        finally:
            with self._lock:
                self._current = None
        return version

    @property
    def watching(self) -> bool:
        """A watch is open right now (not listing, backing off or reconnecting)."""
        current = self._current
        return current is not None and current.open

    def stop(self) -> None:
        self.stopped.set()
        with self._lock:
            if self._current is not None:
                self._current.close()
