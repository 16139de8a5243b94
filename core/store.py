"""Redis persistence: the one module that knows plate-bot's keys.

Any bot replica can serve any click because everything lives here. Transitions are compare-and-set
(WATCH/MULTI): the click that wins the transaction is the only one whose side effects (the lock, the RQ
enqueue, added through `on_commit` into the same MULTI) happen. Keys:

    plate:req:<id>        JSON Request                      (kept `RETENTION` after creation)
    plate:pending         ZSET request id -> expires_at     (the expiry sweeper's work list)
    plate:answered:<id>   STRING a command refused as busy: a replay is not a new command  (ANSWERED_TTL)
    plate:lock:<env>      JSON lock holder                  (lease: PX, refreshed by the worker)
    plate:job:<job id>    HASH status message ts and outcome of one job
    plate:backup:<env>:<revision>  HASH helm values + manifest taken before a change  (BACKUP_RETENTION)
    plate:backups:<env>   ZSET revision -> taken_at, trimmed to BACKUPS_KEPT
    plate:audit           STREAM the audit trail, append-only, trimmed to about AUDIT_MAXLEN entries
    plate:change:<id>     JSON plate-bot's record of one mutating job (who, approvals, digest, outcome)
    plate:changes:<env>   ZSET request id -> job start, trimmed to CHANGES_KEPT (history's join)
    plate:lease:<name>    STRING holder id                  (the watcher's leader lease: PX, holder-only renew)
    plate:incident:<key>  JSON incident, versioned by its `v` field  (compare-and-set; RETENTION)
    plate:incidents:active  SET incident keys open or with Slack messages still owed
    plate:stats           HASH job counters and durations (fields from core.metrics.job_increments), all workers
    plate:release:<env>   JSON last known live release, written by the jobs that read helm status (App Home)
    plate:ops:<env>       LIST JSON of the last operations, newest first, trimmed to OPS_KEPT (App Home)
    plate:home:viewers    ZSET user -> when they last opened the App Home tab (whose Home to refresh)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.client import Pipeline

from core.errors import Conflict, Unavailable
from core.requests import Request, Status

RETENTION = 7 * 86400
BACKUP_RETENTION = 30 * 86400
BACKUPS_KEPT = 20
BACKUP_FORMAT = 2  # plate:backup records: 2 = `v` and optional `enc` fields; none = plaintext before 0.2
LOCK_CLAIM = 60  # a lock taken with a request that needs no approval, until its job is enqueued
LOCK_QUEUE_ALLOWANCE = 1800  # a queued job may wait this long for a worker before its lock lapses
_MAX_RETRIES = 50
AUDIT = "plate:audit"
AUDIT_MAXLEN = 10_000
CHANGES_KEPT = 500
ANSWERED_TTL = 600  # beyond Slack's 5-minute replay window, with room for clock skew
CHANGE_RETENTION = 180 * 86400
STATS = "plate:stats"
OPS_KEPT = 10
HOME_VIEWERS = "plate:home:viewers"
PENDING_SHOWN = 50  # App Home lists at most this many pending requests

OnCommit = Callable[[Pipeline, Request, Request], None]

# Delete the lock only if the caller still holds it (another request may have taken it after expiry).
_RELEASE = """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if cjson.decode(v)['request'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Leases hold a plain holder id; only the holder may extend or drop one.
_LEASE_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_LEASE_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Write an incident only if its stored version is still ARGV[2]; keep the active index in step.
_INCIDENT_CAS = """
local cur = redis.call('GET', KEYS[1])
local v = 0
if cur then v = tonumber(cjson.decode(cur)['v']) or 0 end
if v ~= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
if ARGV[3] == '1' then redis.call('SADD', KEYS[2], ARGV[5]) else redis.call('SREM', KEYS[2], ARGV[5]) end
return 1
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


def _holder(request: Request, state: str) -> dict[str, Any]:
    return {
        "request": request.id,
        "verb": request.verb,
        "user": request.requester,
        "since": time.time(),
        "state": state,
    }


def _key_answered(request_id: str) -> str:
    return f"plate:answered:{request_id}"


def _key_job(job_id: str) -> str:
    return f"plate:job:{job_id}"


PENDING = "plate:pending"
INCIDENTS_ACTIVE = "plate:incidents:active"


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
        self._lease_renew = connection.register_script(_LEASE_RENEW)
        self._lease_release = connection.register_script(_LEASE_RELEASE)
        self._incident_cas = connection.register_script(_INCIDENT_CAS)

    def ping(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    # --- requests ------------------------------------------------------------------------------------
    def create(self, request: Request, *, lock_env: str | None, take_lock: bool = False) -> dict[str, Any] | None:
        """Save a new pending request in one round trip; returns the lock holder instead if `lock_env` is
        busy. A duplicate delivery (same id) is a Conflict. With `take_lock` (a request that goes straight
        to the queue) the lock is taken here, for LOCK_CLAIM seconds until the enqueue extends it, so no
        card is ever posted for a request that would then be cancelled as busy."""
        with _available(), self.redis.pipeline() as pipe:
            if lock_env and take_lock:
                claim = _holder(request, "claimed")
                pipe.set(_key_lock(lock_env), json.dumps(claim), nx=True, px=LOCK_CLAIM * 1000)
            if lock_env:
                pipe.get(_key_lock(lock_env))
            pipe.exists(_key_answered(request.id))
            pipe.set(_key_req(request.id), request.for_storage(), nx=True, ex=RETENTION)
            pipe.zadd(PENDING, {request.id: request.expires_at}, nx=True)
            results = pipe.execute()
        held = json.loads(results[-4]) if lock_env and results[-4] else None
        holder = held if held is not None and held.get("request") != request.id else None
        claimed = bool(lock_env and take_lock and results[0])
        answered, created = results[-3], results[-2]
        if claimed and (answered or not created):
            self.release_lock(str(lock_env), request.id)  # a replay or redelivery must not hold the lock
        if answered and created:  # refused before as busy: a replay, not a new command
            with _available():
                self.redis.delete(_key_req(request.id))
                self.redis.zrem(PENDING, request.id)
            raise Conflict("This command was already answered.")
        if not created:
            # A redelivery: the first copy answered. Checked before the lock, which the first copy may hold
            # itself; and the ZADD must not put a request that was decided meanwhile back on the sweep list.
            with _available():
                first = self.get(request.id)
                if first is None or first.status is not Status.PENDING:
                    self.redis.zrem(PENDING, request.id)
            raise Conflict("This command was already received.")
        if holder is not None:
            with _available(), self.redis.pipeline() as pipe:
                pipe.delete(_key_req(request.id))
                pipe.zrem(PENDING, request.id)
                pipe.set(_key_answered(request.id), "busy", ex=ANSWERED_TTL)
                pipe.execute()
            return holder
        return None

    def forget(self, request_id: str, *, lock_env: str) -> None:
        """Undo a `create` whose answer never came back: the request, and its lock claim if it made one."""
        with _available():
            self._release(keys=[_key_lock(lock_env)], args=[request_id])
            with self.redis.pipeline() as pipe:
                pipe.delete(_key_req(request_id))
                pipe.zrem(PENDING, request_id)
                pipe.execute()

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
                        holder = _holder(new, "queued")
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
    def save_backup(
        self,
        env: str,
        revision: int,
        *,
        values: str,
        manifest: str,
        meta: dict[str, Any],
        seal: Callable[[str], str] | None = None,
    ) -> None:
        """Keep a backup; `seal` (core.backupkeys) encrypts values and manifest, marked `enc: fernet`.
        Records are versioned (`v`); one without `v` or `enc` (before 0.2) is plaintext."""
        key, index = f"plate:backup:{env}:{revision}", f"plate:backups:{env}"
        now = time.time()
        record: dict[str, Any] = {"v": BACKUP_FORMAT, "meta": json.dumps(meta), "taken_at": now}
        if seal is not None:
            record.update(values=seal(values), manifest=seal(manifest), enc="fernet")
        else:
            record.update(values=values, manifest=manifest)
        with self.redis.pipeline() as pipe:
            pipe.delete(key)  # a plaintext field must not outlive an encrypted rewrite of the same revision
            pipe.hset(key, mapping=record)
            pipe.expire(key, BACKUP_RETENTION)
            pipe.zadd(index, {str(revision): revision})
            pipe.zremrangebyrank(index, 0, -BACKUPS_KEPT - 1)
            pipe.expire(index, BACKUP_RETENTION)
            pipe.execute()

    def backup(self, env: str, revision: int, open_: Callable[[str], str] | None = None) -> dict[str, Any] | None:
        """A backup with values and manifest in clear: `open_` (core.backupkeys) decrypts an encrypted one
        (without it, reading one raises ValueError); plaintext records, old or new, are read as they are."""
        raw = self.redis.hgetall(f"plate:backup:{env}:{revision}")
        if not raw:
            return None
        data = {k.decode(): v.decode() for k, v in raw.items()}
        if data.pop("enc", None) == "fernet":
            if open_ is None:
                raise ValueError(f"backup {env}:{revision} is encrypted; a key is needed to read it")
            data["values"], data["manifest"] = open_(data["values"]), open_(data["manifest"])
        return {**data, "meta": json.loads(data["meta"]), "taken_at": float(data["taken_at"])}

    def backup_revisions(self, env: str) -> list[int]:
        return sorted(int(r) for r in self.redis.zrange(f"plate:backups:{env}", 0, -1))

    # --- the audit trail (append and read only: nothing here edits or deletes an entry) ---------------
    def append_audit(self, record: dict[str, str]) -> str:
        """XADD one record; the stream is trimmed (approximately, which is cheap) to AUDIT_MAXLEN."""
        with _available():
            entry_id = self.redis.xadd(AUDIT, dict(record), maxlen=AUDIT_MAXLEN, approximate=True)
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    def audit_entries(self, count: int = 100, *, request: str | None = None) -> list[dict[str, str]]:
        """The newest `count` records, newest first, each with its stream `id`; optionally only one request's."""
        with _available():
            raw = self.redis.xrevrange(AUDIT, count=count)
        out = []
        for entry_id, fields in raw:
            record = {k.decode(): v.decode() for k, v in fields.items()}
            record["id"] = entry_id.decode()
            if request is None or record.get("request") == request:
                out.append(record)
        return out

    # --- plate-bot's record of its own changes, joined with helm history ------------------------------
    def save_change(self, env: str, record: dict[str, Any]) -> None:
        """Create or update the record of one mutating job (`record['request']` is its id)."""
        index = f"plate:changes:{env}"
        with _available(), self.redis.pipeline() as pipe:
            pipe.set(f"plate:change:{record['request']}", json.dumps(record), ex=CHANGE_RETENTION)
            pipe.zadd(index, {record["request"]: float(record.get("started") or time.time())})
            pipe.zremrangebyrank(index, 0, -CHANGES_KEPT - 1)
            pipe.expire(index, CHANGE_RETENTION)
            pipe.execute()

    def change(self, request_id: str) -> dict[str, Any] | None:
        with _available():
            raw = self.redis.get(f"plate:change:{request_id}")
        return json.loads(raw) if raw else None

    def changes(self, env: str, limit: int = 200) -> list[dict[str, Any]]:
        """The newest `limit` records of `env`, newest first."""
        with _available():
            ids = self.redis.zrevrange(f"plate:changes:{env}", 0, limit - 1)
            raws = self.redis.mget([f"plate:change:{i.decode()}" for i in ids]) if ids else []
        return [json.loads(r) for r in raws if r]

    # --- incident watcher: leader lease and incidents -------------------------------------------------
    def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take the lease when it is free, or extend it when `holder` already has it."""
        with _available():
            if self.redis.set(f"plate:lease:{name}", holder, nx=True, px=int(ttl * 1000)):
                return True
        return self.renew_lease(name, holder, ttl)

    def renew_lease(self, name: str, holder: str, ttl: float) -> bool:
        with _available():
            return bool(self._lease_renew(keys=[f"plate:lease:{name}"], args=[holder, int(ttl * 1000)]))

    def release_lease(self, name: str, holder: str) -> bool:
        with _available():
            return bool(self._lease_release(keys=[f"plate:lease:{name}"], args=[holder]))

    def lease_holder(self, name: str) -> str | None:
        with _available():
            raw = self.redis.get(f"plate:lease:{name}")
        return raw.decode() if isinstance(raw, bytes) else raw

    def incident(self, key: str) -> str | None:
        with _available():
            raw = self.redis.get(f"plate:incident:{key}")
        return raw.decode() if isinstance(raw, bytes) else raw

    def active_incidents(self) -> list[str]:
        """Incidents still open, or resolved with a Slack message still owed (JSON, any order)."""
        with _available():
            keys = sorted(k.decode() for k in self.redis.smembers(INCIDENTS_ACTIVE))
            if not keys:
                return []
            raws = self.redis.mget([f"plate:incident:{k}" for k in keys])
        return [r.decode() for r in raws if r]

    def save_incident(self, key: str, raw: str, *, expected: int, active: bool) -> bool:
        """Compare-and-set: write `raw` only if the stored incident still has version `expected` (0: none).
        False when another watcher changed it first: the caller reloads and does not post."""
        with _available():
            done = self._incident_cas(
                keys=[f"plate:incident:{key}", INCIDENTS_ACTIVE],
                args=[raw, expected, "1" if active else "0", RETENTION, key],
            )
        return bool(done)

    # --- metrics shared by all processes (jobs run in forked work-horses) -----------------------------
    def record_stats(self, increments: dict[str, float]) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            for name, amount in increments.items():
                pipe.hincrbyfloat(STATS, name, amount)
            pipe.execute()

    def stats(self) -> dict[str, float]:
        return {k.decode(): float(v) for k, v in self.redis.hgetall(STATS).items()}

    # --- App Home: last known releases, last operations, who looks at Home ----------------------------
    def save_release(self, env: str, record: dict[str, Any]) -> None:
        self.redis.set(f"plate:release:{env}", json.dumps(record), ex=BACKUP_RETENTION)

    def release(self, env: str) -> dict[str, Any] | None:
        raw = self.redis.get(f"plate:release:{env}")
        return json.loads(raw) if raw else None

    def record_operation(self, env: str, entry: dict[str, Any]) -> None:
        key = f"plate:ops:{env}"
        with self.redis.pipeline() as pipe:
            pipe.lpush(key, json.dumps(entry))
            pipe.ltrim(key, 0, OPS_KEPT - 1)
            pipe.expire(key, BACKUP_RETENTION)
            pipe.execute()

    def home_snapshot(self, envs: list[str]) -> dict[str, Any]:
        """Everything App Home shows, in two round trips: per env the release, lock holder and last
        operations, plus the pending requests (oldest first)."""
        with _available():
            with self.redis.pipeline(transaction=False) as pipe:
                for env in envs:
                    pipe.get(f"plate:release:{env}")
                    pipe.get(_key_lock(env))
                    pipe.lrange(f"plate:ops:{env}", 0, OPS_KEPT - 1)
                pipe.zrange(PENDING, 0, PENDING_SHOWN - 1)
                results = pipe.execute()
            ids = [i.decode() for i in results[-1]]
            raws = self.redis.mget([_key_req(i) for i in ids]) if ids else []
        out: dict[str, Any] = {"releases": {}, "locks": {}, "operations": {}}
        for n, env in enumerate(envs):
            release, lock, ops = results[3 * n : 3 * n + 3]
            out["releases"][env] = json.loads(release) if release else None
            out["locks"][env] = json.loads(lock) if lock else None
            out["operations"][env] = [json.loads(o) for o in ops]
        pending = [Request.from_storage(r) for r in raws if r]
        out["pending"] = [r for r in pending if r.status is Status.PENDING]
        return out

    def home_opened(self, user: str, now: float, *, window: float) -> None:
        with self.redis.pipeline() as pipe:
            pipe.zadd(HOME_VIEWERS, {user: now})
            pipe.zremrangebyscore(HOME_VIEWERS, "-inf", now - window)
            pipe.execute()

    def home_viewers(self, since: float, limit: int) -> list[str]:
        """Users who opened Home since `since`, most recent first."""
        users = self.redis.zrevrangebyscore(HOME_VIEWERS, "+inf", since, start=0, num=limit)
        return [u.decode() for u in users]


class LockHeld(Conflict):
    """The environment is held by another request; `holder` says who, for what, since when."""

    def __init__(self, holder: dict[str, Any]) -> None:
        self.holder = holder
        super().__init__(f"The environment is locked by request {holder.get('request')}.")
