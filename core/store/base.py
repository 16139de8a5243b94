"""What every part of the store shares: the connection, and Redis trouble as plate-bot's own error.

Every public method of a `StorePart` subclass is wrapped so that any Redis error (refused connection,
timeout, a READONLY replica during a failover, OOM) leaves it as `Unavailable`: callers handle one error,
never a raw redis exception, and nothing is half-done on their side.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import redis
from redis.client import Pipeline
from redis.exceptions import LockError, WatchError
from redis.lock import Lock

from core.errors import Unavailable

__all__ = ["Lock", "LockError", "Pipeline", "StorePart", "WatchError", "fields", "loads", "text", "texts"]

P = ParamSpec("P")
T = TypeVar("T")


def _guarded(method: Callable[P, T]) -> Callable[P, T]:
    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except redis.RedisError as exc:
            raise Unavailable("plate-bot cannot reach Redis right now; nothing was changed.") from exc

    return call


# redis-py types every reply as a union of everything any command may return; these say what it is.
def text(value: Any) -> str:
    """A Redis reply as text (the connection returns bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def texts(values: Any) -> list[str]:
    return [text(v) for v in values or ()]


def fields(raw: Any) -> dict[str, str]:
    """A hash (HGETALL) or a stream entry's fields as text."""
    return {text(k): text(v) for k, v in (raw or {}).items()}


def loads(raw: Any) -> Any:
    """A JSON value stored as a string, or None when the key was absent."""
    return json.loads(raw) if raw else None


class StorePart:
    """A concern's keys on one Redis connection."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        for name, value in list(vars(cls).items()):
            if callable(value) and not name.startswith("_"):
                setattr(cls, name, _guarded(value))

    def ping(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False
