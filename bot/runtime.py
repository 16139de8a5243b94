"""Wiring: from Settings and the environments file to a running Bolt app, store, queue and housekeeper.

`serve`, the demo, the tests and the benchmarks all build the service through `build_runtime`, so
they exercise the same objects production runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import redis
from rq import Queue
from slack_bolt import App
from waitress.server import create_server

from bot.app import Services, build_app
from bot.queue import queue_for
from bot.redisconn import connect
from bot.server import Housekeeper, WebApp
from bot.slack import SlackGateway
from bot.store import Store
from config.environments import PlateConfig
from config.settings import Settings

log = logging.getLogger("plate.runtime")


@dataclass
class Runtime:
    settings: Settings
    config: PlateConfig
    connection: redis.Redis
    store: Store
    slack: SlackGateway
    queue: Queue
    app: App
    web: WebApp
    housekeeper: Housekeeper
    _servers: list[Any] = field(default_factory=list)

    def http_server(self, host: str, port: int, threads: int = 8) -> Any:
        server = create_server(self.web, host=host, port=port, threads=threads, ident="plate-bot")
        self._servers.append(server)
        return server

    def worker_connection(self) -> redis.Redis:
        return connect(self.settings, for_worker=True)

    def shutdown(self, server: Any | None = None) -> None:
        """Stop taking requests, let in-flight ones finish, stop housekeeping."""
        self.web.draining.set()
        self.housekeeper.stop()
        for srv in [server] if server is not None else list(self._servers):
            try:
                srv.task_dispatcher.shutdown(timeout=10)
            finally:
                srv.close()
        log.info("stopped")


def build_runtime(settings: Settings, config: PlateConfig, *, housekeeping_interval: float = 5.0) -> Runtime:
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
    app = build_app(services)
    web = WebApp(app, store, slack)
    keeper = Housekeeper(app.plate, queue, interval=housekeeping_interval)  # type: ignore[attr-defined]
    return Runtime(settings, config, connection, store, slack, queue, app, web, keeper)
