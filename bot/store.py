"""Redis persistence: the one module that knows plate-bot's keys.

Any bot replica can serve any click because everything lives here. Transitions are compare-and-set
(WATCH/MULTI): the click that wins the transaction is the only one whose side effects (the lock, the RQ
enqueue, added through `on_commit` into the same MULTI) happen. Keys:

    plate:req:<id>        JSON Request                      (kept `RETENTION` after creation)
    plate:pending         ZSET request id -> expires_at     (the expiry sweeper's work list)
    plate:lock:<env>      JSON lock holder                  (lease: PX, refreshed by the worker)
    plate:job:<job id>    HASH status message ts and outcome of one job
    plate:backup:<env>:<revision>  HASH helm values + manifest taken before a change  (BACKUP_RETENTION)
    plate:backups:<env>   ZSET revision -> taken_at, trimmed to BACKUPS_KEPT
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.client import Pipeline

from bot.approvals import Request, Status
from bot.errors import Conflict, Unavailable

RETENTION = 7 * 86400
BACKUP_RETENTION = 30 * 86400
BACKUPS_KEPT = 20
LOCK_QUEUE_ALLOWANCE = 1800  # a queued job may wait this long for a worker before its lock lapses
_MAX_RETRIES = 50

OnCommit = Callable[[Pipeline, Request, Request], None]

# Delete the lock only if the caller still holds it (another request may have taken it after expiry).
_RELEASE = """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if cjson.decode(v)['request'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_REFRESH = """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local d = cjson.decode(v)
if d['request'] ~= ARGV[1] then return 0 end
d['state'] = ARGV[3]
redis.call('SET', KEYS[1], cjson.encode(d), 'PX', ARGV[2])
return 1
"""


def _key_req(request_id: str) -> str:
    return f"plate:req:{request_id}"


def _key_lock(env: str) -> str:
    return f"plate:lock:{env}"


def _key_job(job_id: str) -> str:
    return f"plate:job:{job_id}"


PENDING = "plate:pending"


@contextmanager
def _available() -> Iterator[None]:
    """Redis trouble becomes a friendly `Unavailable`: nothing half-done, the user is told to retry."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise Unavailable("plate-bot cannot reach Redis right now; nothing was changed.") from exc


class Store:
    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection
        self._release = connection.register_script(_RELEASE)
        self._refresh = connection.register_script(_REFRESH)

    def ping(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    # --- requests ------------------------------------------------------------------------------------
    def create(self, request: Request, *, lock_env: str | None) -> dict[str, Any] | None:
        """Save a new pending request in one round trip; returns the lock holder instead if `lock_env` is
        busy. A duplicate delivery (same id) is a Conflict."""
        with _available(), self.redis.pipeline() as pipe:
            if lock_env:
                pipe.get(_key_lock(lock_env))
            pipe.set(_key_req(request.id), request.for_storage(), nx=True, ex=RETENTION)
            pipe.zadd(PENDING, {request.id: request.expires_at})
            results = pipe.execute()
        holder = json.loads(results[0]) if lock_env and results[0] else None
        created = results[-2]
        if holder is not None:
            if created:
                self.redis.delete(_key_req(request.id))
            self.redis.zrem(PENDING, request.id)
            return holder
        if not created:
            raise Conflict("This command was already received.")
        return None

    def get(self, request_id: str) -> Request | None:
        with _available():
            raw = self.redis.get(_key_req(request_id))
        return Request.from_storage(raw) if raw else None

    def transition(
        self,
        request_id: str,
        change: Callable[[Request], Request],
        *,
        lock_env: str | None = None,
        lock_ttl: int = 0,
        on_commit: OnCommit | None = None,
    ) -> tuple[Request, Request]:
        """Apply `change` atomically. When the new state is APPROVED and `lock_env` is set, the environment
        lock is taken in the same transaction (Conflict if someone else holds it). `on_commit` adds its own
        commands (the RQ enqueue) to the MULTI, so they happen exactly when the transition does."""
        key = _key_req(request_id)
        lock_key = _key_lock(lock_env) if lock_env else None
        with _available(), self.redis.pipeline() as pipe:
            for _ in range(_MAX_RETRIES):
                try:
                    pipe.watch(key, *([lock_key] if lock_key else []))
                    raw = pipe.get(key)
                    if raw is None:
                        raise Conflict("I no longer know this request (it is older than a week).")
                    old = Request.from_storage(raw)
                    new = change(old)
                    take_lock = bool(lock_key) and new.status is Status.APPROVED and old.status is not new.status
                    if take_lock:
                        held = pipe.get(lock_key)
                        if held and json.loads(held)["request"] != new.id:
                            raise LockHeld(json.loads(held))
                    pipe.multi()
                    pipe.set(key, new.for_storage(), keepttl=True)
                    if new.status.final:
                        pipe.zrem(PENDING, new.id)
                    if take_lock:
                        holder = {
                            "request": new.id,
                            "verb": new.verb,
                            "user": new.requester,
                            "since": time.time(),
                            "state": "queued",
                        }
                        pipe.set(lock_key, json.dumps(holder), px=int((lock_ttl + LOCK_QUEUE_ALLOWANCE) * 1000))
                    if on_commit is not None and old.status is not new.status:
                        on_commit(pipe, old, new)
                    pipe.execute()
                    return old, new
                except redis.WatchError:
                    continue
                finally:
                    pipe.reset()
        raise Unavailable("Too many simultaneous changes to this request; try again.")

    def due_for_expiry(self, now: float, limit: int = 100) -> list[str]:
        with _available():
            ids = self.redis.zrangebyscore(PENDING, "-inf", now, start=0, num=limit)
        return [i.decode() if isinstance(i, bytes) else i for i in ids]

    # --- environment locks ---------------------------------------------------------------------------
    def lock_holder(self, env: str) -> dict[str, Any] | None:
        with _available():
            raw = self.redis.get(_key_lock(env))
        return json.loads(raw) if raw else None

    def refresh_lock(self, env: str, request_id: str, ttl: int, state: str = "running") -> bool:
        """Extend the lease while the job runs; False if the lock is no longer ours."""
        return bool(self._refresh(keys=[_key_lock(env)], args=[request_id, int(ttl * 1000), state]))

    def release_lock(self, env: str, request_id: str) -> bool:
        return bool(self._release(keys=[_key_lock(env)], args=[request_id]))

    # --- job thread state ----------------------------------------------------------------------------
    def job_state(self, job_id: str) -> dict[str, str]:
        raw = self.redis.hgetall(_key_job(job_id))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def save_job_state(self, job_id: str, **fields: str) -> None:
        with self.redis.pipeline() as pipe:
            pipe.hset(_key_job(job_id), mapping=fields)
            pipe.expire(_key_job(job_id), RETENTION)
            pipe.execute()

    # --- backups taken before a change ----------------------------------------------------------------
    def save_backup(self, env: str, revision: int, *, values: str, manifest: str, meta: dict[str, Any]) -> None:
        key, index = f"plate:backup:{env}:{revision}", f"plate:backups:{env}"
        now = time.time()
        with self.redis.pipeline() as pipe:
            pipe.hset(key, mapping={"values": values, "manifest": manifest, "meta": json.dumps(meta), "taken_at": now})
            pipe.expire(key, BACKUP_RETENTION)
            pipe.zadd(index, {str(revision): revision})
            pipe.zremrangebyrank(index, 0, -BACKUPS_KEPT - 1)
            pipe.expire(index, BACKUP_RETENTION)
            pipe.execute()

    def backup(self, env: str, revision: int) -> dict[str, Any] | None:
        raw = self.redis.hgetall(f"plate:backup:{env}:{revision}")
        if not raw:
            return None
        data = {k.decode(): v.decode() for k, v in raw.items()}
        return {**data, "meta": json.loads(data["meta"]), "taken_at": float(data["taken_at"])}

    def backup_revisions(self, env: str) -> list[int]:
        return sorted(int(r) for r in self.redis.zrange(f"plate:backups:{env}", 0, -1))


class LockHeld(Conflict):
    """The environment is held by another request; `holder` says who, for what, since when."""

    def __init__(self, holder: dict[str, Any]) -> None:
        self.holder = holder
        super().__init__(f"The environment is locked by request {holder.get('request')}.")
