"""The incident watcher's keys: its leader lease and its incidents. Keys:

plate:lease:<name>    STRING holder id                  (the leader lease: redis-py's Lock, the holder id its token)
plate:incident:<key>  JSON incident, versioned by its `v` field  (compare-and-set; RETENTION)
plate:incidents:active  SET incident keys open or with Slack messages still owed
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from core.redisconn import Redis
from core.store.base import Lock, LockError, StorePart, text

RETENTION = 7 * 86400
INCIDENTS_ACTIVE = "plate:incidents:active"

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


class LeaseLock(StorePart):
    """One holder's side of a lease: redis-py's `Lock` on `plate:lease:<name>` with the holder id as its
    token, so the key says who holds it (`WatchStore.lease_holder`). Taking it is `SET NX PX`; renewing
    and releasing go through redis-py's scripts, which act only while the key still holds this token. The
    token is not thread-local: the watcher renews from its keeper thread and releases from its main one."""

    def __init__(self, connection: Redis, name: str, holder: str, ttl: float) -> None:
        super().__init__(connection)
        self.holder, self.ttl = holder, ttl
        self.lock: Lock = connection.lock(f"plate:lease:{name}", timeout=ttl, thread_local=False)

    def acquire(self) -> bool:
        """Extend the lease to a full ttl when this holder has it, or take it when it is free."""
        return self.renew() or bool(self.lock.acquire(blocking=False, token=self.holder))

    def renew(self) -> bool:
        """Reset the ttl, only while the key still holds this holder's token."""
        try:
            return self.lock.reacquire()
        except LockError:  # never taken or released here (no token), or lapsed and maybe taken by another
            return False

    def release(self) -> bool:
        """Drop the lease now (a standby takes it at its next attempt); False when this holder had no lease."""
        try:
            self.lock.release()
        except LockError:
            return False
        return True


class WatchStore(StorePart):
    @cached_property
    def _incident_cas(self) -> Any:
        return self.redis.register_script(_INCIDENT_CAS)

    # --- incident watcher: leader lease and incidents -------------------------------------------------
    def lease(self, name: str, holder: str, ttl: float) -> LeaseLock:
        """`holder`'s hold on the lease `name` (nothing is sent to Redis until it acquires)."""
        return LeaseLock(self.redis, name, holder, ttl)

    def lease_holder(self, name: str) -> str | None:
        raw = self.redis.get(f"plate:lease:{name}")
        return raw.decode() if isinstance(raw, bytes) else raw

    def incident(self, key: str) -> str | None:
        raw = self.redis.get(f"plate:incident:{key}")
        return raw.decode() if isinstance(raw, bytes) else raw

    def active_incidents(self) -> list[str]:
        """Incidents still open, or resolved with a Slack message still owed (JSON, any order)."""
        keys = sorted(text(k) for k in self.redis.smembers(INCIDENTS_ACTIVE))
        if not keys:
            return []
        raws = self.redis.mget([f"plate:incident:{k}" for k in keys])
        return [text(r) for r in raws if r]

    def save_incident(self, key: str, raw: str, *, expected: int, active: bool) -> bool:
        """Compare-and-set: write `raw` only if the stored incident still has version `expected` (0: none).
        False when another watcher changed it first: the caller reloads and does not post."""
        done = self._incident_cas(
            keys=[f"plate:incident:{key}", INCIDENTS_ACTIVE],
            args=[raw, expected, "1" if active else "0", RETENTION, key],
        )
        return bool(done)
