"""What every part of the store shares: the connection, and Redis trouble as plate-bot's own error.

Every public method of a `StorePart` subclass is wrapped so that any Redis error (refused connection,
timeout, a READONLY replica during a failover, OOM) leaves it as `Unavailable`: callers handle one error,
never a raw redis exception, and nothing is half-done on their side.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import redis
from redis.client import Pipeline
from redis.exceptions import LockError, WatchError
from redis.lock import Lock

from core.errors import Unavailable

__all__ = ["Lock", "LockError", "Pipeline", "StorePart", "WatchError"]

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
