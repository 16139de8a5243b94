"""Wiring: from Settings and the environments file to a running Bolt app, store, queue and housekeeper.

`serve`, the demo, the tests and the benchmarks all build the service through `build_runtime`, so
they exercise the same objects production runs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from bot.app import App, Listeners, Services, build_app, wsgi_handler
from bot.lifecycle import HttpLimits, HttpLoop, drain_executor, make_server, remaining
from bot.server import Housekeeper, WebApp
from config.environments import PlateConfig
from config.settings import Settings
from core.metrics import METRICS, cluster_exporter
from core.queue import Queue, cluster_state, queue_for
from core.redisconn import Redis, connect
from core.slack import SlackGateway
from core.store import Store

log = logging.getLogger("plate.runtime")
DRAIN_TIMEOUT = 20.0  # below the chart's 30 s grace period for serve


@dataclass
class Runtime:
    settings: Settings
    config: PlateConfig
    connection: Redis
    store: Store
    slack: SlackGateway
    queue: Queue
    app: App
    listeners: Listeners
    web: WebApp
    housekeeper: Housekeeper
    executor: Any = None  # Bolt's listener executor (Services.listener_executor)
    socket_mode: Any = None  # the SocketModeHandler, when serving over Socket Mode
    _servers: list[Any] = field(default_factory=list)
    _loops: dict[int, HttpLoop] = field(default_factory=dict)

    def http_server(self, host: str, port: int, threads: int = 8) -> Any:
        server = make_server(self.web, host, port, threads=threads, limits=_limits(self.settings))
        self._servers.append(server)
        return server

    def worker_connection(self) -> Redis:
        return connect(self.settings, for_worker=True)

    def run_http(self, server: Any) -> None:
        """Serve `server` in the calling thread until `shutdown()` (which `server.run()` cannot promise)."""
        loop = self._loops.setdefault(id(server), HttpLoop(server))
        loop.run()

    def shutdown(self, server: Any | None = None, *, timeout: float = DRAIN_TIMEOUT) -> bool:
        """Drain, then stop: refuse new Slack requests (503; /readyz 503) while the HTTP server keeps
        answering, wait for requests inside Bolt and then for their listeners (which post cards and enqueue
        jobs after the ack), stop housekeeping, then close the HTTP server. True if everything drained
        within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        self.web.draining.set()
        log.info("draining")
        if self.socket_mode is not None:
            try:
                self.socket_mode.close()  # no new envelopes; acks of running listeners are lost, Slack retries
            except Exception:
                log.warning("closing the Socket Mode connection failed", exc_info=True)
        drained = self.web.wait_idle(remaining(deadline))
        if self.executor is not None:
            drained = drain_executor(self.executor, remaining(deadline)) and drained
        self.housekeeper.stop()
        if self.housekeeper.is_alive():
            self.housekeeper.join(remaining(deadline))
        for srv in [server] if server is not None else list(self._servers):
            loop = self._loops.get(id(srv))
            if loop is not None:
                loop.stop(max(remaining(deadline), 5.0))
                continue
            try:  # a server whose loop never started: waitress' own close
                srv.task_dispatcher.shutdown(timeout=10)
            finally:
                srv.close()
        if not drained:
            log.warning("stopped before every request had finished")
        log.info("stopped")
        return drained


def _limits(settings: Settings) -> HttpLimits:
    return HttpLimits(
        connections=settings.plate_http_connection_limit,
        idle_timeout=settings.plate_http_idle_timeout,
        request_timeout=settings.plate_http_request_timeout,
    )


def build_runtime(settings: Settings, config: PlateConfig, *, housekeeping_interval: float | None = None) -> Runtime:
    connection = connect(settings)
    store = Store(connection)
    slack = SlackGateway.from_settings(settings)
    queue = queue_for(connection)
    services = Services(
        config=config,
        store=store,
        slack=slack,
        queue=queue,
        signing_secret=settings.slack_signing_secret.get_secret_value(),
    )
    app, listeners = build_app(services)
    web = WebApp(wsgi_handler(app), store, slack, services.signing_secret, queue=queue)
    interval = housekeeping_interval or settings.plate_housekeeping_interval
    keeper = Housekeeper(listeners.expire_due, queue, interval=interval)
    if cluster_exporter(settings.plate_cluster_metrics, process="serve", embedded=settings.redis_url is None):
        METRICS.share(lambda: cluster_state(queue, store))
    return Runtime(
        settings,
        config,
        connection,
        store,
        slack,
        queue,
        app,
        listeners,
        web,
        keeper,
        executor=services.listener_executor,
    )
