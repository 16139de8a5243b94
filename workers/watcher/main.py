"""`plate-bot watch`: the watcher process, its /healthz and /metrics, and a clean SIGTERM.

SIGTERM (and Ctrl-C) stop the loop and release the leader lease, so a standby replica takes over at its
next renewal instead of waiting out the lease.
"""

from __future__ import annotations

import json
import logging
import signal
import socketserver
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from config.environments import Environment, PlateConfig
from config.settings import Settings
from core.metrics import METRICS
from core.slack import SlackGateway
from core.store import Store
from workers.helm import Helm
from workers.kube import KubeGateway
from workers.watcher.watcher import Tuning, Watcher

log = logging.getLogger("plate.watch")
STALE = 120.0  # a loop silent this long is stuck (a diagnosis' helm call is capped at 60 s)


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: not worth a log line
        pass


def health_app(watcher: Watcher) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            data = METRICS.render()
            start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4")])
            return [data]
        if path == "/healthz":
            alive = time.monotonic() - watcher.heartbeat < STALE
            body = json.dumps({"ok": alive, "leader": watcher.active, "holder": watcher.identity}).encode()
            start_response("200 OK" if alive else "503 Service Unavailable", [("Content-Type", "application/json")])
            return [body]
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"error": "not found"}']

    return app


def serve_health(watcher: Watcher, host: str, port: int) -> WSGIServer:
    server = make_server(host, port, health_app(watcher), server_class=_Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="plate-watch-http", daemon=True).start()
    return server


def build(settings: Settings, config: PlateConfig, store: Store, tuning: Tuning | None = None) -> Watcher:
    def kube_for(env: Environment) -> KubeGateway:
        return KubeGateway.connect(env.kube_context, settings.kubeconfig)

    def helm_for(env: Environment) -> Helm:
        return Helm(
            settings.helm_bin, namespace=env.namespace, kube_context=env.kube_context, kubeconfig=settings.kubeconfig
        )

    slack = SlackGateway.from_settings(settings)
    return Watcher(config, store, slack, kube_for=kube_for, helm_for=helm_for, tuning=tuning)


def main(
    settings: Settings,
    config: PlateConfig,
    *,
    metrics_port: int,
    host: str = "0.0.0.0",
    lease_ttl: float = 15.0,
    quiet: float = 120.0,
) -> int:
    from core.redisconn import connect

    watcher = build(settings, config, Store(connect(settings)), Tuning(lease_ttl=lease_ttl, quiet=quiet))
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("stopping on signal %d", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = serve_health(watcher, host, metrics_port)
    log.info("watcher started", extra={"holder": watcher.identity, "metrics_port": server.server_port})
    try:
        watcher.run(stop)
    finally:
        server.shutdown()
    return 0
