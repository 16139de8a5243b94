"""HTTP edge: Slack events on /slack/events, probes and metrics, served by waitress.

Also runs the housekeeping loop every replica can run safely (all of it is compare-and-set in Redis):
expire overdue requests, and sweep RQ's started-job registry so a job whose worker died is reported
within seconds instead of at RQ's next 10-minute maintenance.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from rq import Queue
from rq.registry import StartedJobRegistry
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.metrics import METRICS
from bot.slack import SlackGateway
from bot.store import Store

log = logging.getLogger("plate.server")

StartResponse = Callable[..., Any]
MAX_BODY = 256 * 1024  # Slack payloads are a few KB; anything much larger is not Slack


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> Iterable[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class WebApp:
    """WSGI: routes Slack to Bolt, and answers /healthz, /readyz and /metrics itself."""

    def __init__(self, app: App, store: Store, slack: SlackGateway) -> None:
        self.bolt = SlackRequestHandler(app)
        self.store = store
        self.slack = slack
        self.draining = threading.Event()
        self._slack_ok = False

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/healthz":
            return _json(start_response, "200 OK", {"ok": True})
        if path == "/readyz":
            return self._ready(start_response)
        if path == "/metrics":
            data = METRICS.render()
            start_response(
                "200 OK", [("Content-Type", "text/plain; version=0.0.4"), ("Content-Length", str(len(data)))]
            )
            return [data]
        if path == "/slack/events" and method == "POST":
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY:
                return _json(start_response, "413 Payload Too Large", {"error": "request too large"})
            if self.draining.is_set():
                return _json(start_response, "503 Service Unavailable", {"error": "shutting down"})
            return self.bolt(environ, start_response)
        return _json(start_response, "404 Not Found", {"error": "not found"})

    def _ready(self, start_response: StartResponse) -> Iterable[bytes]:
        redis_ok = self.store.ping()
        # auth.test once until it succeeds: readiness must not spend Slack's rate limit every few seconds.
        if not self._slack_ok:
            self._slack_ok = self.slack.auth_ok()
        ok = redis_ok and self._slack_ok and not self.draining.is_set()
        status = "200 OK" if ok else "503 Service Unavailable"
        return _json(
            start_response, status, {"redis": redis_ok, "slack": self._slack_ok, "draining": self.draining.is_set()}
        )


class Housekeeper(threading.Thread):
    """Periodic, idempotent upkeep shared by all bot replicas."""

    def __init__(self, plate: Any, queue: Queue, interval: float = 5.0) -> None:
        super().__init__(name="plate-housekeeper", daemon=True)
        self.plate = plate
        self.queue = queue
        self.interval = interval
        self.stopped = threading.Event()

    def run_once(self) -> None:
        self.plate.expire_due()
        # cleanup() moves abandoned jobs to the failed registry and runs their on_failure callback here.
        StartedJobRegistry(queue=self.queue).cleanup()
        METRICS.queue_depth.set(self.queue.count)

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.run_once()
            except Exception:
                log.exception("housekeeping round failed")

    def stop(self) -> None:
        self.stopped.set()
