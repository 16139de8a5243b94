"""Requests and environment locks: the approval state machine's storage.

Any bot replica can serve any click because everything lives here. Transitions are compare-and-set
(WATCH/MULTI): the click that wins the transaction is the only one whose side effects (the lock, the RQ
enqueue, added through `on_commit` into the same MULTI) happen. Keys:

    plate:req:<id>        JSON Request                      (kept `RETENTION` after creation)
    plate:pending         ZSET request id -> expires_at     (the expiry sweeper's work list)
    plate:answered:<id>   STRING a command refused as busy: a replay is not a new command  (ANSWERED_TTL)
    plate:lock:<name>     JSON lock holder                  (lease: PX, refreshed by the worker)
                          <name>: a release (`Environment.key`: env/namespace/release, or the environment's
                          name for an old-style one) or a whole environment (harbor-bootstrap). A lock is
                          taken only while its `blockers` are free: an app's waits for its environment's,
                          the environment's for every app's.
    plate:job:<job id>    HASH status message ts and outcome of one job
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

from core.errors import Conflict, Unavailable
from core.requests import Request, Status
from core.store.base import Pipeline, StorePart, WatchError, fields, loads, texts

RETENTION = 7 * 86400
LOCK_CLAIM = 60  # a lock taken with a request that needs no approval, until its job is enqueued
LOCK_QUEUE_ALLOWANCE = 1800  # a queued job may wait this long for a worker before its lock lapses
ANSWERED_TTL = 600  # beyond Slack's 5-minute replay window, with room for clock skew
_MAX_RETRIES = 50
PENDING = "plate:pending"

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


def key_req(request_id: str) -> str:
    return f"plate:req:{request_id}"


def key_lock(env: str) -> str:
    return f"plate:lock:{env}"


def _key_answered(request_id: str) -> str:
    return f"plate:answered:{request_id}"


def _key_job(job_id: str) -> str:
    return f"plate:job:{job_id}"


def _holder(request: Request, state: str) -> dict[str, Any]:
    return {
        "request": request.id,
        "verb": request.verb,
        "app": request.app,
        "user": request.requester,
        "since": time.time(),
        "state": state,
    }


class LockHeld(Conflict):
    """The release or environment is held by another request; `holder` says who, for what, since when."""

    def __init__(self, holder: dict[str, Any]) -> None:
        self.holder = holder
        super().__init__(f"It is locked by request {holder.get('request')}.")


class RequestStore(StorePart):
    @cached_property
    def _release(self) -> Any:
        return self.redis.register_script(_RELEASE)

    @cached_property
    def _refresh(self) -> Any:
        return self.redis.register_script(_REFRESH)

    # --- requests ------------------------------------------------------------------------------------
    def create(
        self,
        request: Request,
        *,
        lock_env: str | None,
        take_lock: bool = False,
        blockers: Sequence[str] = (),
    ) -> dict[str, Any] | None:
        """Save a new pending request in one round trip; returns the lock holder instead if the lock
        `lock_env` or one of its `blockers` is busy. A duplicate delivery (same id) is a Conflict. With
        `take_lock` (a request that goes straight to the queue) the lock is taken here, for LOCK_CLAIM
        seconds until the enqueue extends it, so no card is ever posted for a request that would then be
        cancelled as busy."""
        locks = [lock_env, *blockers] if lock_env else []
        with self.redis.pipeline() as pipe:
            if lock_env and take_lock:
                claim = _holder(request, "claimed")
                pipe.set(key_lock(lock_env), json.dumps(claim), nx=True, px=LOCK_CLAIM * 1000)
            for name in locks:
                pipe.get(key_lock(name))
            pipe.exists(_key_answered(request.id))
            pipe.set(key_req(request.id), request.for_storage(), nx=True, ex=RETENTION)
            pipe.zadd(PENDING, {request.id: request.expires_at}, nx=True)
            results = pipe.execute()
        first = 1 if lock_env and take_lock else 0
        held = [loads(raw) for raw in results[first : first + len(locks)]]
        holder: dict[str, Any] | None = next((h for h in held if h and h.get("request") != request.id), None)
        claimed = bool(lock_env and take_lock and results[0])
        answered, created = results[-3], results[-2]
        if claimed and (answered or not created or holder is not None):
            # A replay or redelivery must not hold the lock, nor a claim beside a busy blocker.
            self.release_lock(str(lock_env), request.id)
        if answered and created:  # refused before as busy: a replay, not a new command
            self.redis.delete(key_req(request.id))
            self.redis.zrem(PENDING, request.id)
            raise Conflict("This command was already answered.")
        if not created:
            # A redelivery: the first copy answered. Checked before the lock, which the first copy may hold
            # itself; and the ZADD must not put a request that was decided meanwhile back on the sweep list.
            first_copy = self.get(request.id)
            if first_copy is None or first_copy.status is not Status.PENDING:
                self.redis.zrem(PENDING, request.id)
            raise Conflict("This command was already received.")
        if holder is not None:
            with self.redis.pipeline() as pipe:
                pipe.delete(key_req(request.id))
                pipe.zrem(PENDING, request.id)
                pipe.set(_key_answered(request.id), "busy", ex=ANSWERED_TTL)
                pipe.execute()
            return holder
        return None

    def forget(self, request_id: str, *, lock_env: str) -> None:
        """Undo a `create` whose answer never came back: the request, and its lock claim if it made one."""
        self._release(keys=[key_lock(lock_env)], args=[request_id])
        with self.redis.pipeline() as pipe:
            pipe.delete(key_req(request_id))
            pipe.zrem(PENDING, request_id)
            pipe.execute()

    def get(self, request_id: str) -> Request | None:
        raw = self.redis.get(key_req(request_id))
        return Request.from_storage(raw) if raw else None

    def transition(
        self,
        request_id: str,
        change: Callable[[Request], Request],
        *,
        lock_env: str | None = None,
        lock_ttl: int = 0,
        on_commit: OnCommit | None = None,
        blockers: Sequence[str] = (),
    ) -> tuple[Request, Request]:
        """Apply `change` atomically. When the new state is APPROVED and `lock_env` is set, that lock is
        taken in the same transaction (LockHeld if someone else holds it or one of its `blockers`).
        `on_commit` adds its own commands (the RQ enqueue) to the MULTI, so they happen exactly when the
        transition does."""
        key = key_req(request_id)
        lock_key = key_lock(lock_env) if lock_env else None
        others = [key_lock(b) for b in blockers] if lock_env else []
        with self.redis.pipeline() as pipe:
            for _ in range(_MAX_RETRIES):
                try:
                    pipe.watch(key, *([lock_key] if lock_key else []), *others)
                    raw = pipe.get(key)
                    if raw is None:
                        raise Conflict("I no longer know this request (it is older than a week).")
                    old = Request.from_storage(raw)
                    new = change(old)
                    take_lock = new.status is Status.APPROVED and old.status is not new.status
                    if take_lock and lock_key is not None:
                        for held in (pipe.get(k) for k in (lock_key, *others)):
                            if held and json.loads(held)["request"] != new.id:
                                raise LockHeld(json.loads(held))
                    pipe.multi()
                    pipe.set(key, new.for_storage(), keepttl=True)
                    if new.status.final:
                        pipe.zrem(PENDING, new.id)
                    if take_lock and lock_key is not None:
                        holder = _holder(new, "queued")
                        pipe.set(lock_key, json.dumps(holder), px=int((lock_ttl + LOCK_QUEUE_ALLOWANCE) * 1000))
                    if on_commit is not None and old.status is not new.status:
                        on_commit(pipe, old, new)
                    pipe.execute()
                    return old, new
                except WatchError:
                    continue
                finally:
                    pipe.reset()
        raise Unavailable("Too many simultaneous changes to this request; try again.")

    def due_for_expiry(self, now: float, limit: int = 100) -> list[str]:
        return texts(self.redis.zrangebyscore(PENDING, "-inf", now, start=0, num=limit))

    # --- release and environment locks -------------------------------------------------------------
    def lock_holder(self, env: str) -> dict[str, Any] | None:
        holder: dict[str, Any] | None = loads(self.redis.get(key_lock(env)))
        return holder

    def refresh_lock(self, env: str, request_id: str, ttl: int, state: str = "running") -> bool:
        """Extend the lease while the job runs; False if the lock is no longer ours."""
        return bool(self._refresh(keys=[key_lock(env)], args=[request_id, int(ttl * 1000), state]))

    def release_lock(self, env: str, request_id: str) -> bool:
        """Free the lock if `request_id` still holds it (compare-and-delete): False when it lapsed or moved
        to another request meanwhile. `plate-bot admin break-lock` frees a stuck one the same way."""
        return bool(self._release(keys=[key_lock(env)], args=[request_id]))

    def locks(self) -> list[dict[str, Any]]:
        """Every held lock, by name: its holder (request, verb, app, user, since, state) as stored, with
        `name` and `lease` (seconds left, None without an expiry). SCAN: no lock is missed, none blocks."""
        keys = sorted(set(texts(self.redis.scan_iter(match=key_lock("*"), count=500))))
        if not keys:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
                pipe.pttl(key)
            results = pipe.execute()
        held = []
        for n, key in enumerate(keys):
            raw, pttl = results[2 * n : 2 * n + 2]
            if raw is None:  # lapsed between SCAN and GET
                continue
            try:
                holder = json.loads(raw)
            except ValueError:
                holder = {}
            lease = int(pttl) / 1000 if int(pttl) >= 0 else None
            held.append(
                {**(holder if isinstance(holder, dict) else {}), "name": key.removeprefix(key_lock("")), "lease": lease}
            )
        return held

    # --- job thread state ----------------------------------------------------------------------------
    def job_state(self, job_id: str) -> dict[str, str]:
        return fields(self.redis.hgetall(_key_job(job_id)))

    def save_job_state(self, job_id: str, **fields: str) -> None:
        with self.redis.pipeline() as pipe:
            pipe.hset(_key_job(job_id), mapping=dict[Any, Any](fields))
            pipe.expire(_key_job(job_id), RETENTION)
            pipe.execute()
