"""The incident watcher's keys: its leader lease and its incidents. Keys:

plate:lease:<name>    STRING holder id                  (the leader lease: PX, holder-only renew)
plate:incident:<key>  JSON incident, versioned by its `v` field  (compare-and-set; RETENTION)
plate:incidents:active  SET incident keys open or with Slack messages still owed
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from core.store import StorePart

RETENTION = 7 * 86400
INCIDENTS_ACTIVE = "plate:incidents:active"

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


class WatchStore(StorePart):
    @cached_property
    def _lease_renew(self) -> Any:
        return self.redis.register_script(_LEASE_RENEW)

    @cached_property
    def _lease_release(self) -> Any:
        return self.redis.register_script(_LEASE_RELEASE)

    @cached_property
    def _incident_cas(self) -> Any:
        return self.redis.register_script(_INCIDENT_CAS)

    # --- incident watcher: leader lease and incidents -------------------------------------------------
    def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take the lease when it is free, or extend it when `holder` already has it."""
        if self.redis.set(f"plate:lease:{name}", holder, nx=True, px=int(ttl * 1000)):
            return True
        return self.renew_lease(name, holder, ttl)

    def renew_lease(self, name: str, holder: str, ttl: float) -> bool:
        return bool(self._lease_renew(keys=[f"plate:lease:{name}"], args=[holder, int(ttl * 1000)]))

    def release_lease(self, name: str, holder: str) -> bool:
        return bool(self._lease_release(keys=[f"plate:lease:{name}"], args=[holder]))

    def lease_holder(self, name: str) -> str | None:
        raw = self.redis.get(f"plate:lease:{name}")
        return raw.decode() if isinstance(raw, bytes) else raw

    def incident(self, key: str) -> str | None:
        raw = self.redis.get(f"plate:incident:{key}")
        return raw.decode() if isinstance(raw, bytes) else raw

    def active_incidents(self) -> list[str]:
        """Incidents still open, or resolved with a Slack message still owed (JSON, any order)."""
        keys = sorted(k.decode() for k in self.redis.smembers(INCIDENTS_ACTIVE))
        if not keys:
            return []
        raws = self.redis.mget([f"plate:incident:{k}" for k in keys])
        return [r.decode() for r in raws if r]

    def save_incident(self, key: str, raw: str, *, expected: int, active: bool) -> bool:
        """Compare-and-set: write `raw` only if the stored incident still has version `expected` (0: none).
        False when another watcher changed it first: the caller reloads and does not post."""
        done = self._incident_cas(
            keys=[f"plate:incident:{key}", INCIDENTS_ACTIVE],
            args=[raw, expected, "1" if active else "0", RETENTION, key],
        )
        return bool(done)
