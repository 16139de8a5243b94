"""The probes app of all three processes: `/metrics`, `/healthz` (liveness) and `/readyz` (readiness, where a
process has it), one WSGI app built by `probes_app`.

`/metrics` is prometheus_client's own WSGI app on the process's registry (content negotiation, gzip, the
standard exposition content type). Each health endpoint is a `Health`: named checks, callables the process
passes in (serve: Redis, Slack auth, draining; worker: none yet; watch: its loop and leadership), answered
as JSON, 200 when every judged check passes and 503 otherwise. Adding a check is one more `Check(...)`.

`serve` mounts the app behind its Slack route (`bot.server.WebApp`) on waitress; `worker` and `watch`
serve it with `ProbeServer`, a stdlib WSGI server on a daemon thread of the main process. For the worker
that is the RQ parent, which lives as long as the worker does; the job metrics it shows come from Redis
(see core.metrics), since each job runs in a forked work-horse whose own counters die with it.
"""

from __future__ import annotations

import json
import logging
import socketserver
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app

log = logging.getLogger("plate.probes")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def json_response(start_response: StartResponse, status: str, body: dict[str, Any]) -> Iterable[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


@dataclass(frozen=True)
class Check:
    """One field of a health answer: `probe()`'s value under `name`. The answer is healthy only if the value
    is `expect` (as a bool) for every check; `expect=None` reports the value without judging it. A probe
    that raises fails the check (its value shows as null)."""

    name: str
    probe: Callable[[], object]
    expect: bool | None = True


@dataclass(frozen=True)
class Health:
    """A health endpoint: its checks, and whether the answer starts with `"ok"` (every check passed)."""

    checks: Sequence[Check] = ()
    summary: bool = True

    def answer(self) -> tuple[bool, dict[str, Any]]:
        ok, fields = True, dict[str, Any]()
        for check in self.checks:
            try:
                value = check.probe()
            except Exception:
                log.warning("health check %s failed", check.name, exc_info=True)
                ok, fields[check.name] = False, None
                continue
            fields[check.name] = value
            if check.expect is not None and bool(value) is not check.expect:
                ok = False
        return ok, ({"ok": ok, **fields} if self.summary else fields)


def probes_app(
    registry: CollectorRegistry,
    *,
    live: Health,
    ready: Health | None = None,
    scale: Callable[[], dict[str, int]] | None = None,
) -> WsgiApp:
    """`/metrics` of `registry`, `/healthz` answered by `live`, `/readyz` by `ready` (404 without it), and
    `/scale` (serve): the jobs a worker autoscaler should provide for, as JSON (503 when unknown)."""
    metrics = make_wsgi_app(registry)
    endpoints = {"/healthz": live} | ({"/readyz": ready} if ready is not None else {})

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/scale" and scale is not None:
            try:
                return json_response(start_response, "200 OK", scale())
            except Exception:  # KEDA keeps the replicas it has (its fallback) while this answers 503
                log.warning("could not read the queue for /scale", exc_info=True)
                return json_response(start_response, "503 Service Unavailable", {"error": "queue unreadable"})
        if (health := endpoints.get(path)) is not None:
            ok, body = health.answer()
            return json_response(start_response, "200 OK" if ok else "503 Service Unavailable", body)
        return json_response(start_response, "404 Not Found", {"error": "not found"})

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes and probes every few seconds would drown the logs


class ProbeServer(socketserver.ThreadingMixIn, WSGIServer):
    """`app` on host:port, served by a daemon thread (a thread per request), for `worker` and `watch`."""

    daemon_threads = True

    def __init__(self, host: str, port: int, app: WsgiApp) -> None:
        super().__init__((host, port), _QuietHandler)  # binds now: a taken port fails here, with OSError
        self.set_app(app)
        self._thread = threading.Thread(target=self.serve_forever, name="plate-probes", daemon=True)

    @property
    def port(self) -> int:
        return self.server_port

    def start(self) -> ProbeServer:
        self._thread.start()
        log.info("metrics and health on port %s", self.port)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread.is_alive():
            self.shutdown()
        self.server_close()
