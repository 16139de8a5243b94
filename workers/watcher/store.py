"""The incident watcher's keys: its leader lease, its incidents and its release notices. Keys:

plate:lease:<name>    STRING holder id                  (the leader lease: redis-py's Lock, the holder id its token)
plate:incident:<key>  JSON incident, versioned by its `v` field  (compare-and-set; RETENTION)
plate:incidents:active  SET incident keys open or with Slack messages still owed
plate:watch:release-seen:<driver>:<release key>
                      JSON {"revision", "at"}: a release's first sight through its helm records of that
                      driver (secret|configmap): the newest revision listed then, and when. SET NX, so the
                      first watcher's stays; renewed at every list (BASELINE_RETENTION)
plate:watch:notice:<release key>:<install>:<revision>
                      JSON {"state": "claimed"|"posted", "at", "holder", "ts"}: one revision's notice
                      (claimed before posting, compare-and-set; a claim older than NOTICE_STALE may be taken
                      over; NOTICE_RETENTION, longer than the age after which revisions are never announced)

A release key is Environment.key (`prod`, or `prod/<namespace>/<release>` for one app of several);
<install> is the release's first deployment (epoch seconds), so a reinstall's revisions are new ones.
"""

from __future__ import annotations

import json
import time
from functools import cached_property
from typing import Any

from core.redisconn import Redis
from core.store.base import Lock, LockError, StorePart, text

RETENTION = 7 * 86400
INCIDENTS_ACTIVE = "plate:incidents:active"
BASELINE_RETENTION = 400 * 86400
NOTICE_RETENTION = 30 * 86400
NOTICE_STALE = 60.0  # a claimed notice not confirmed within this long is tried again (as incidents' posts)

# Claim a notice: 'posted' if it was, 'busy' if another claim is younger than ARGV[3] seconds, else write
# ARGV[1] (the claim) and answer 'mine'.
_NOTICE_CLAIM = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, rec = pcall(cjson.decode, cur)
  if ok and type(rec) == 'table' then
    if rec['state'] == 'posted' then return 'posted' end
    if (tonumber(rec['at']) or 0) + tonumber(ARGV[3]) > tonumber(ARGV[2]) then return 'busy' end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
return 'mine'
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

    @cached_property
    def _notice_claim(self) -> Any:
        return self.redis.register_script(_NOTICE_CLAIM)

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

    # --- release notices ------------------------------------------------------------------------------
    def release_baseline(self, driver: str, key: str, revision: int, at: float) -> tuple[int, float]:
        """The release's first sight through `driver`'s records: (revision, at) as given when none is stored
        yet, else the stored one (another watcher, or this one before a restart, saw it first)."""
        name = f"plate:watch:release-seen:{driver}:{key}"
        with self.redis.pipeline() as pipe:
            pipe.set(name, json.dumps({"revision": revision, "at": at}), nx=True, ex=BASELINE_RETENTION)
            pipe.get(name)
            pipe.expire(name, BASELINE_RETENTION)
            _created, raw, _renewed = pipe.execute()
        try:
            stored = json.loads(text(raw))
            return int(stored["revision"]), float(stored["at"])
        except (ValueError, TypeError, KeyError):  # not ours to trust: start again from now
            self.redis.set(name, json.dumps({"revision": revision, "at": at}), ex=BASELINE_RETENTION)
            return revision, at

    def claim_notice(self, notice: str, holder: str, now: float | None = None, stale: float = NOTICE_STALE) -> str:
        """Claim the right to post one revision's notice: "mine", "posted" (done already: never again) or
        "busy" (another watcher claimed it less than `stale` seconds ago)."""
        now = time.time() if now is None else now
        claim = json.dumps({"state": "claimed", "at": now, "holder": holder})
        done = self._notice_claim(keys=[f"plate:watch:notice:{notice}"], args=[claim, now, stale, NOTICE_RETENTION])
        return text(done)

    def notice_posted(self, notice: str, holder: str, ts: str | None, now: float | None = None) -> None:
        now = time.time() if now is None else now
        record = {"state": "posted", "at": now, "holder": holder, "ts": ts}
        self.redis.set(f"plate:watch:notice:{notice}", json.dumps(record), ex=NOTICE_RETENTION)

    def notice(self, notice: str) -> dict[str, Any] | None:
        raw = self.redis.get(f"plate:watch:notice:{notice}")
        return json.loads(text(raw)) if raw else None
