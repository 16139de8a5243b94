"""`plate-bot watch`: the watcher process, its /healthz and /metrics, and a clean SIGTERM.

SIGTERM (and Ctrl-C) stop the loop and release the leader lease, so a standby replica takes over at its
next renewal instead of waiting out the lease.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable

from config.environments import Environment, PlateConfig
from config.settings import Settings
from core.metrics import METRICS, cluster_exporter
from core.probes import Check, Health, ProbeServer, probes_app
from core.queue import cluster_state, queue_for
from core.slack import SlackGateway
from core.store import Store
from workers.helm import Helm
from workers.kube import KubeGateway
from workers.watcher.watcher import Tuning, Watcher

log = logging.getLogger("plate.watch")
STALE = 120.0  # a loop silent this long is stuck (a diagnosis' helm call is capped at 60 s)


def health(watcher: Watcher) -> Health:
    """/healthz: alive while the loop turns (leader or standby alike); says which it is, and who it is."""
    return Health(
        [
            Check("ok", lambda: time.monotonic() - watcher.heartbeat < STALE),
            Check("leader", lambda: watcher.active, expect=None),
            Check("holder", lambda: watcher.identity, expect=None),
        ],
        summary=False,  # the loop's check is the answer's "ok"
    )


def serve_health(watcher: Watcher, host: str, port: int) -> ProbeServer:
    """/healthz and /metrics on host:port (0: any free port), served until `stop()`."""
    return ProbeServer(host, port, probes_app(METRICS.registry, live=health(watcher))).start()


def export_metrics(watcher: Watcher, settings: Settings, store: Store) -> None:
    """`plate_watch_leader`, and the cluster-wide series while this watcher leads (one exporter, so a sum
    over pods counts each job once)."""
    METRICS.watch_leader.set_function(lambda: 1.0 if watcher.active else 0.0)
    exporter = cluster_exporter(settings.plate_cluster_metrics, process="watch", embedded=settings.redis_url is None)
    if exporter is not False:
        queue = queue_for(store.redis)
        leading: Callable[[], bool] = (lambda: watcher.active) if exporter is None else (lambda: True)
        METRICS.share(lambda: cluster_state(queue, store), when=leading)


def build(settings: Settings, config: PlateConfig, store: Store, tuning: Tuning | None = None) -> Watcher:
    def kube_for(env: Environment) -> KubeGateway:
        return KubeGateway.connect(env.kube_context, env.kubeconfig_or(settings.kubeconfig))

    def helm_for(env: Environment) -> Helm:
        kubeconfig = env.kubeconfig_or(settings.kubeconfig)
        return Helm(settings.helm_bin, namespace=env.namespace, kube_context=env.kube_context, kubeconfig=kubeconfig)

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

    store = Store(connect(settings))
    watcher = build(settings, config, store, Tuning(lease_ttl=lease_ttl, quiet=quiet))
    export_metrics(watcher, settings, store)
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
        server.stop()
    return 0
