"""HTTP edge: Slack events on /slack/events, and the probes app (core.probes) for every other path, served
by waitress.

Also runs the housekeeping loop every replica can run safely (all of it is compare-and-set in Redis):
expire overdue requests, and sweep RQ's started-job registry so a job whose worker died is reported
within seconds instead of at RQ's next 10-minute maintenance.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from bot import ingress
from core.metrics import METRICS
from core.probes import Check, Health, json_response, probes_app
from core.queue import Queue, scale_hint, sweep_abandoned
from core.slack import SlackGateway
from core.store import Store

log = logging.getLogger("plate.server")

StartResponse = Callable[..., Any]
MAX_BODY = 256 * 1024  # Slack payloads are a few KB; anything much larger is not Slack


class WebApp:
    """WSGI: routes /slack/events to Bolt; every other path goes to the probes app (/healthz, /readyz,
    /metrics, 404), ready when Redis answers, Slack accepted the token once, and no drain has begun."""

    def __init__(
        self,
        bolt: Callable[..., Iterable[bytes]],
        store: Store,
        slack: SlackGateway,
        signing_secret: str,
        clock: Callable[[], float] = time.time,
        queue: Queue | None = None,
    ) -> None:
        self.bolt = bolt  # bot.app.wsgi_handler: Bolt's WSGI adapter
        self.signing_secret = signing_secret
        self.clock = clock
        self.store = store
        self.slack = slack
        self.draining = threading.Event()
        self._slack_ok = False
        self._inflight = 0  # requests inside Bolt right now: shutdown waits for them
        self._idle = threading.Condition()
        ready = Health(
            [
                Check("redis", store.ping),
                Check("slack", self.slack_ready),
                Check("draining", self.draining.is_set, expect=False),  # SIGTERM: 503 while in-flight work ends
            ],
            summary=False,  # {"redis", "slack", "draining"}
        )
        scale = (lambda: scale_hint(queue)) if queue is not None else None
        self.probes = probes_app(METRICS.registry, live=Health(), ready=ready, scale=scale)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/slack/events":
            if method != "POST":
                return json_response(start_response, "405 Method Not Allowed", {"error": "POST only"})
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY:
                return json_response(start_response, "413 Payload Too Large", {"error": "request too large"})
            raw = environ["wsgi.input"].read(length) if length else b""
            if (refused := self._refuse(raw, environ)) is not None:
                return json_response(start_response, *refused)
            environ["wsgi.input"] = io.BytesIO(raw)  # read once here; Bolt reads it again
            with self._idle:
                self._inflight += 1  # counted before the check, so shutdown cannot miss a request let in
            try:
                if self.draining.is_set():
                    return json_response(start_response, "503 Service Unavailable", {"error": "shutting down"})
                return self.bolt(environ, start_response)
            finally:
                with self._idle:
                    self._inflight -= 1
                    self._idle.notify_all()
        return self.probes(environ, start_response)

    def _refuse(self, raw: bytes, environ: dict[str, Any]) -> tuple[str, dict[str, str]] | None:
        """The answer to a request that must not reach Bolt, or None. Unverified requests are refused
        first and quietly (no traceback, no outbound call): they are noise or an attack, counted by reason."""
        timestamp, signature = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP"), environ.get("HTTP_X_SLACK_SIGNATURE")
        if (reason := ingress.unverified(self.signing_secret, raw, timestamp, signature, self.clock())) is not None:
            METRICS.refused("unverified")
            log.info("refused an unverified request", extra={"reason": reason})
            return "401 Unauthorized", {"error": "invalid request"}
        data, reason = ingress.parse(raw, environ.get("CONTENT_TYPE"))
        if data is None:
            METRICS.refused("malformed")
            return "400 Bad Request", {"error": str(reason)}
        if (reason := ingress.unhandled(data)) is not None:
            METRICS.refused("unhandled")
            return "404 Not Found", {"error": reason}
        return None

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no Slack request is inside Bolt; False if some still are after `timeout` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout)

    def slack_ready(self) -> bool:
        """auth.test once until it succeeds: readiness must not spend Slack's rate limit every few seconds."""
        if not self._slack_ok:
            self._slack_ok = self.slack.auth_ok()
        return self._slack_ok


class Housekeeper(threading.Thread):
    """Periodic, idempotent upkeep shared by all bot replicas."""

    def __init__(self, expire_due: Callable[[], int], queue: Queue, interval: float = 5.0) -> None:
        super().__init__(name="plate-housekeeper", daemon=True)
        self.expire_due = expire_due  # Listeners.expire_due: overdue requests, their cards edited
        self.queue = queue
        self.interval = interval
        self.stopped = threading.Event()

    def run_once(self) -> None:
        self.expire_due()
        sweep_abandoned(self.queue)

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.run_once()
            except Exception:
                log.exception("housekeeping round failed")

    def stop(self) -> None:
        self.stopped.set()
