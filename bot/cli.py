"""`plate-bot serve | worker | watch | demo`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

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


def serve(args: argparse.Namespace, settings: Settings) -> int:
    from rq import Worker

    from bot import logs
    from bot.runtime import build_runtime

    logs.configure(settings.log_level)
    _require(settings, "slack_signing_secret", "slack_bot_token")
    config = _load(settings)
    runtime = build_runtime(settings, config)
    server = runtime.http_server(args.host, args.port)
    embedded_worker = settings.redis_url is None
    if args.socket_mode:
        _require(settings, "slack_app_token")
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        assert settings.slack_app_token is not None
        handler = SocketModeHandler(runtime.app, settings.slack_app_token.get_secret_value())
        handler.connect()
        log.info("socket mode connected")
    runtime.housekeeper.start()
    log.info("serving", extra={"host": args.host, "port": server.effective_port, "embedded_redis": embedded_worker})
    if not embedded_worker:
        _on_sigterm(lambda: runtime.shutdown(server))
        server.run()
        return 0
    # Embedded: the worker owns the main thread (RQ needs it for signals); HTTP runs beside it.
    http = threading.Thread(target=server.run, name="plate-http", daemon=True)
    http.start()
    worker = Worker([runtime.queue], connection=runtime.worker_connection())
    try:
        worker.work(with_scheduler=True, logging_level=settings.log_level)
    finally:
        runtime.shutdown(server)
    return 0


def work(args: argparse.Namespace, settings: Settings) -> int:
    from rq import Worker

    from bot import logs
    from bot.queue import queue_for
    from bot.redisconn import connect

    logs.configure(settings.log_level)
    _load(settings)
    connection = connect(settings, for_worker=True)
    worker = Worker([queue_for(connection)], connection=connection)
    ok = worker.work(burst=args.burst, with_scheduler=True, logging_level=settings.log_level)
    return 0 if ok or args.burst else 1


def watch(_args: argparse.Namespace, _settings: Settings) -> int:
    print("plate-bot watch: the incident watcher is not available yet.", file=sys.stderr)
    return 2


def demo(args: argparse.Namespace, _settings: Settings) -> int:
    from bot.demo import main as demo_main

    return demo_main(quiet=args.quiet)


def _on_sigterm(stop: object) -> None:
    def handler(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=stop, daemon=True).start()  # type: ignore[arg-type]

    signal.signal(signal.SIGTERM, handler)


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
    w.set_defaults(func=work)
    sub.add_parser("watch", help="incident watcher").set_defaults(func=watch)
    d = sub.add_parser("demo", help="run a scripted session against loopback fakes and print the threads")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args, Settings()))


if __name__ == "__main__":
    sys.exit(main())
