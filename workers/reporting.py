"""One status message per job, edited in place, plus a few short replies in the request's thread.

Edits are coalesced: at most one `chat.update` per `min_interval` per message, sent from a timer thread
so a slow or rate-limited Slack never holds up the job; the final state is sent before the job ends.
Replies are capped so a chatty job cannot flood a thread.
The status message's ts is kept in Redis: a retried or replayed job edits the same message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from core import messages
from core.progress import Progress
from core.redact import REDACTOR
from core.requests import Request
from core.slack import SlackError, SlackGateway
from core.store import Store

log = logging.getLogger("plate.report")
MAX_REPLIES = 8
REPLY_LIMIT = 3000


class ThreadReporter:
    def __init__(
        self,
        slack: SlackGateway,
        store: Store,
        request: Request,
        progress: Progress,
        *,
        job_key: str | None = None,
        clock: Callable[[], float] = time.time,
        min_interval: float = 1.0,
    ) -> None:
        self.slack, self.store, self.request = slack, store, request
        self.progress = progress
        self.job_key = job_key or request.job_id
        self.clock = clock
        self.min_interval = min_interval
        self.channel = request.channel
        self.thread_ts = request.message_ts
        self.status_ts: str | None = None
        self.replies = 0
        self._lock = threading.RLock()
        self._last_flush = 0.0
        self._dirty = False
        self._timer: threading.Timer | None = None
        self._send_lock = threading.Lock()

    def open(self) -> None:
        """Post (or find again) the status message in the thread."""
        state = self.store.job_state(self.job_key)
        self.status_ts = state.get("status_ts")
        if self.status_ts:
            self._flush(force=True)
            return
        text, blocks = messages.progress_message(self.progress, self.clock())
        try:
            self.status_ts = self.slack.post(self.channel, text, blocks, thread_ts=self.thread_ts)
        except SlackError:
            log.warning("could not post the status message")
            return
        self._last_flush = time.monotonic()
        self.store.save_job_state(self.job_key, status_ts=self.status_ts, title=self.progress.title)

    def update(self, change: Callable[[Progress], Progress], *, force: bool = False) -> None:
        with self._lock:
            self.progress = change(self.progress)
            self._dirty = True
        self._flush(force=force)

    def start(self, key: str) -> None:
        self.update(lambda p: p.start(key, self.clock()))

    def done(self, key: str, note: str = "") -> None:
        self.update(lambda p: p.done(key, self.clock(), note))

    def fail(self, key: str, note: str = "") -> None:
        self.update(lambda p: p.fail(key, self.clock(), note))

    def warn(self, key: str, note: str = "") -> None:
        self.update(lambda p: p.warn(key, self.clock(), note))

    def skip(self, key: str, note: str = "") -> None:
        self.update(lambda p: p.skip(key, note))

    def finish(self, *, ok: bool, summary: str = "") -> None:
        self.update(lambda p: p.finish(self.clock(), ok=ok, summary=summary), force=True)
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def reply(self, text: str) -> None:
        """A detail reply in the thread (bounded in number and length)."""
        if self.replies >= MAX_REPLIES:
            log.info("reply dropped: the thread already has %d replies from this job", self.replies)
            return
        text = REDACTOR.text(text)  # before cutting: a secret cut in two no longer matches its value
        if len(text) > REPLY_LIMIT:
            text = text[: REPLY_LIMIT - 40] + f"\n… ({len(text) - REPLY_LIMIT + 40} characters cut)"
        self.replies += 1
        try:
            self.slack.post(self.channel, text, thread_ts=self.thread_ts)
        except SlackError:
            log.warning("could not post a thread reply")

    def _flush(self, *, force: bool = False) -> None:
        """A forced flush (open, finish) is sent now, from the caller. Any other edit goes out from a timer
        thread, at most one per `min_interval`: the job never waits on Slack between its steps (under a
        burst, a 429's Retry-After can be most of a minute: bench/slack_calls.py)."""
        with self._lock:
            if not self._dirty or self.status_ts is None:
                return
            if not force:
                if self._timer is None:
                    wait = max(0.0, self.min_interval - (time.monotonic() - self._last_flush))
                    self._timer = threading.Timer(wait, self._timed_flush)
                    self._timer.daemon = True
                    self._timer.start()
                return
        self._send()

    def _timed_flush(self) -> None:
        with self._lock:
            self._timer = None
        self._send()

    def _send(self) -> None:
        # One edit at a time, each carrying the newest state, taken right before it goes: an older state
        # never lands after a newer one, and progress changes never wait behind a slow edit.
        with self._send_lock:
            with self._lock:
                if not self._dirty or self.status_ts is None:
                    return
                text, blocks = messages.progress_message(self.progress, self.clock())
                self._dirty = False
                self._last_flush = time.monotonic()
                channel, ts = self.channel, self.status_ts
            try:
                self.slack.update(channel, ts, text, blocks)
            except SlackError:
                log.warning("could not update the status message")
