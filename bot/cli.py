"""`plate-bot serve | worker | watch | demo | admin`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from pydantic import ValidationError

from bot import admin
from config.environments import ConfigError, PlateConfig, load_config
from config.settings import Settings

log = logging.getLogger("plate.cli")


def _load(settings: Settings) -> PlateConfig:
    try:
        return load_config(settings.plate_config)
    except ConfigError as exc:
        print(f"plate-bot: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _require(settings: Settings, *names: str) -> None:
    missing = [n.upper() for n in names if not getattr(settings, n) or not getattr(settings, n).get_secret_value()]
    if missing:
        print(f"plate-bot: set {', '.join(missing)} (see README: Slack app set-up)", file=sys.stderr)
        raise SystemExit(2)


def _backups(settings: Settings) -> None:
    """A worker that would store helm values in plaintext without being told to does not start."""
    from core.backupkeys import BackupKeyError, backup_policy

    try:
        policy = backup_policy(settings)
    except BackupKeyError as exc:
        print(f"plate-bot: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    log.info("backups", extra={"mode": policy.mode})


def serve(args: argparse.Namespace, settings: Settings) -> int:
    from bot.runtime import build_runtime
    from core import logs
    from core.redisconn import shown_url

    logs.configure(settings.log_level)
    # Acks wait for the GIL behind post-ack work (cards, Redis, Slack calls) in other threads; a 1 ms
    # switch interval instead of 5 ms cuts the ack's tail latency under load (bench/ack_latency.py).
    sys.setswitchinterval(0.001)
    _require(settings, "slack_signing_secret", "slack_bot_token")
    if args.socket_mode:
        _require(settings, "slack_app_token")
    config = _load(settings)
    runtime = build_runtime(settings, config)
    server = runtime.http_server(args.host, args.port)  # also in Socket Mode: probes and metrics
    embedded_worker = settings.redis_url is None
    if args.socket_mode:
        from bot.app import socket_mode

        assert settings.slack_app_token is not None
        runtime.socket_mode = socket_mode(runtime.app, settings.slack_app_token.get_secret_value())
        try:
            runtime.socket_mode.connect()
        except Exception as exc:
            print(f"plate-bot: cannot open the Socket Mode connection: {exc}", file=sys.stderr)
            return 1
        log.info("socket mode connected")
    runtime.housekeeper.start()
    log.info(
        "serving",
        extra={
            "host": args.host,
            "port": server.effective_port,
            "embedded_redis": embedded_worker,
            "redis": shown_url(settings.redis_url),
        },
    )
    done = threading.Event()
    drained: list[bool] = []

    def stop() -> None:
        drained.append(runtime.shutdown(server))
        done.set()

    if not embedded_worker:
        # SIGTERM: 503 to new Slack requests and /readyz, drain the running ones, then close HTTP.
        _on_signals(stop)
        runtime.run_http(server)
        done.wait(10)
        return _exit_after_drain(drained)
    # Embedded: the worker owns the main thread (RQ needs it for signals); HTTP runs beside it. SIGTERM
    # stops new Slack requests at once, RQ finishes the running job (warm shutdown), then HTTP drains.
    # Imported only here: it loads the job code and the kubernetes client, which the bot alone never uses.
    from workers.runner import PlateWorker

    _backups(settings)
    http = threading.Thread(target=runtime.run_http, args=(server,), name="plate-http", daemon=True)
    http.start()
    worker = _signal_aware(PlateWorker, on_stop=runtime.web.draining.set)(
        [runtime.queue], runtime.worker_connection(), heartbeat=settings.plate_worker_heartbeat
    )
    try:
        worker.work(with_scheduler=False, logging_level=settings.log_level)  # no scheduled jobs (see work)
    finally:
        stop()
    return _exit_after_drain(drained)


def work(args: argparse.Namespace, settings: Settings) -> int:
    from core import logs
    from core.metrics import METRICS, cluster_exporter
    from core.probes import ProbeServer, probes_app
    from core.queue import QUEUE_NAME, cluster_state, queue_for
    from core.redisconn import connect, shown_url
    from core.store import Store
    from workers import jobs  # noqa: F401 - imported once here, every forked job inherits it (~1 s each)
    from workers.kube import preload
    from workers.runner import PlateWorker, worker_health

    preload()  # the client's API modules, loaded lazily otherwise: ~2 s in every job
    logs.configure(settings.log_level)
    _load(settings)
    _backups(settings)
    connection = connect(settings, for_worker=True)
    if cluster_exporter(settings.plate_cluster_metrics, process="worker", embedded=settings.redis_url is None):
        # Read through its own connection (bot-side timeouts), not the worker's.
        scrape = queue_for(connect(settings))
        METRICS.share(lambda: cluster_state(scrape, Store(scrape.connection)))
    port = args.metrics_port if args.metrics_port is not None else (0 if args.burst else 9102)
    # SIGTERM: RQ's warm shutdown (the running job finishes, no new one starts); a second SIGTERM or the
    # SIGKILL after the grace period kills the job, which the bot's housekeeper then reports as lost.
    worker = _signal_aware(PlateWorker)([queue_for(connection)], connection, heartbeat=settings.plate_worker_heartbeat)
    # Liveness: a recent heartbeat of its own, and Redis answering (see worker_health).
    live = worker_health(worker, Store(connect(settings)).ping)
    try:
        probes = ProbeServer(args.metrics_host, port, probes_app(METRICS.registry, live=live)).start() if port else None
    except OSError as exc:
        where = f"{args.metrics_host}:{port}"
        print(f"plate-bot: cannot serve /metrics on {where} ({exc.strerror}); use --metrics-port N, or 0 for none",
              file=sys.stderr)  # fmt: skip
        return 2
    log.info("worker starting", extra={"redis": shown_url(settings.redis_url), "queue": QUEUE_NAME})
    try:
        # plate-bot schedules nothing (no enqueue_at/in, no RQ retries): no scheduler process, whose only effect
        # was a traceback in the logs at every Redis outage or Sentinel failover.
        ok = worker.work(burst=args.burst, with_scheduler=False, logging_level=settings.log_level)
    finally:
        if probes is not None:
            probes.stop()
    return 0 if ok or args.burst or worker.signalled else 1


def watch(args: argparse.Namespace, settings: Settings) -> int:
    from core import logs
    from workers.watcher.main import main as watch_main

    logs.configure(settings.log_level)
    _require(settings, "slack_bot_token")
    config = _load(settings)
    return watch_main(settings, config, metrics_port=args.metrics_port, lease_ttl=args.lease_ttl, quiet=args.quiet)


def demo(args: argparse.Namespace, _settings: Settings) -> int:
    # Loaded by name, and only here: the loopback fakes are no part of the service (the layers contract
    # keeps bot, workers and core from importing them; the production image does not contain them).
    try:
        demo_main = importlib.import_module("sandbox.demo").main
    except ModuleNotFoundError:
        print("plate-bot demo runs from a source checkout: pip install -e '.[demo]'", file=sys.stderr)
        return 2

    return demo_main(quiet=args.quiet)


def _on_signals(stop: Callable[[], None]) -> None:
    """SIGTERM/SIGINT start `stop` once, off the signal handler (it waits for requests to drain)."""
    started = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        if started.is_set():
            log.info("already shutting down", extra={"signal": signum})
            return
        started.set()
        threading.Thread(target=stop, name="plate-shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _exit_after_drain(drained: list[bool]) -> int:
    if drained and drained[0]:
        return 0
    # Listener threads still running would hold the interpreter at exit: leave now, the drain is over.
    log.warning("exiting with requests still running")
    logging.shutdown()
    os._exit(1)


def _signal_aware(worker_class: type[Any], on_stop: Callable[[], None] | None = None) -> type[Any]:
    """`worker_class` that remembers it was asked to stop (a clean exit, not a failure) and calls
    `on_stop` on the first SIGTERM/SIGINT, before RQ's warm shutdown waits for the running job."""

    class SignalAware(worker_class):
        signalled = False

        def request_stop(self, signum: int, frame: FrameType | None) -> None:
            self.signalled = True
            if on_stop is not None:
                on_stop()
            super().request_stop(signum, frame)

    return SignalAware


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="plate-bot", description="ChatOps for Kubernetes deploys in Slack.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="Slack HTTP (or Socket Mode) server")
    s.add_argument("--host", default="0.0.0.0")
    s.add_argument("--port", type=int, default=3000)
    s.add_argument("--socket-mode", action="store_true", help="connect to Slack over Socket Mode (SLACK_APP_TOKEN)")
    s.set_defaults(func=serve)
    w = sub.add_parser("worker", help="RQ worker that runs the jobs")
    w.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    w.add_argument(
        "--metrics-port", type=int, default=None, help="/metrics and /healthz port (9102; none with --burst; 0: none)"
    )
    w.add_argument("--metrics-host", default="0.0.0.0")
    w.set_defaults(func=work)
    wt = sub.add_parser("watch", help="incident watcher: diagnosis threads in the incident channel")
    wt.add_argument("--metrics-port", type=int, default=9103, help="/metrics and /healthz (the liveness probe)")
    wt.add_argument("--lease-ttl", type=float, default=15.0, help="leader lease: a dead leader is replaced within it")
    wt.add_argument("--quiet", type=float, default=120.0, help="seconds healthy before an incident counts as resolved")
    wt.set_defaults(func=watch)
    d = sub.add_parser("demo", help="run a scripted session against loopback fakes and print the threads")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=demo)
    admin.add_parser(sub)
    return p


def _settings() -> Settings:
    """The process settings, or one line per invalid variable (never its value: it may be a secret)."""
    try:
        return Settings()
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(part) for part in err["loc"]).upper() or "settings"
            print(f"plate-bot: {where}: {err['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: Sequence[str] | None = None) -> int:
    from core.redisconn import NoEmbeddedRedis

    args = parser().parse_args(argv)
    try:
        return int(args.func(args, _settings()))
    except NoEmbeddedRedis as exc:
        print(f"plate-bot: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
