"""What App Home and /metrics read: job counters shared by every process (jobs run in forked
work-horses whose own counters die with them), the last known release and operations per environment,
and who looked at Home recently. Keys:

    plate:stats           HASH job counters and durations (fields from core.metrics.job_increments), all workers
    plate:release:<key>   JSON last known live release (key: `Environment.key`, an app's release or an
                          old-style environment's name), written by the jobs that read helm status
    plate:ops:<env>       LIST JSON of the last operations of an environment (all its apps), newest first
    plate:home:viewers    ZSET user -> when they last opened the App Home tab (whose Home to refresh)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from core.requests import Request, Status
from core.store.base import StorePart, fields, loads, texts
from core.store.records import BACKUP_RETENTION
from core.store.requests import PENDING, key_lock, key_req

STATS = "plate:stats"
OPS_KEPT = 10
HOME_VIEWERS = "plate:home:viewers"
PENDING_SHOWN = 50  # App Home lists at most this many pending requests


class HomeStore(StorePart):
    # --- metrics shared by all processes (jobs run in forked work-horses) -----------------------------
    def record_stats(self, increments: dict[str, float]) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            for name, amount in increments.items():
                pipe.hincrbyfloat(STATS, name, amount)
            pipe.execute()

    def record_latest(self, values: dict[str, float]) -> None:
        """Set stats fields that hold a time, not a count (`last_success|env|app|kind`)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for name, value in values.items():
                pipe.hset(STATS, name, value)
            pipe.execute()

    def stats(self) -> dict[str, float]:
        return {k: float(v) for k, v in fields(self.redis.hgetall(STATS)).items()}

    def approvals_and_locks(self) -> tuple[int, dict[str, int]]:
        """For /metrics: requests waiting for a decision, and locks held per environment (a lock's name is
        the environment or `env/namespace/release`)."""
        pending = int(self.redis.zcard(PENDING))
        locks: dict[str, int] = {}
        for key in texts(self.redis.scan_iter(match=key_lock("*"), count=500)):
            env = key.removeprefix(key_lock("")).split("/", 1)[0]
            locks[env] = locks.get(env, 0) + 1
        return pending, locks

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

    def home_snapshot(self, envs: list[str], keys: Sequence[str] = ()) -> dict[str, Any]:
        """Everything App Home shows, in two round trips: the release record and lock holder of every
        environment and release in `envs` + `keys` (`Environment.key`), the last operations per
        environment, and the pending requests (oldest first)."""
        names = list(dict.fromkeys([*envs, *keys]))
        with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.get(f"plate:release:{name}")
                pipe.get(key_lock(name))
            for env in envs:
                pipe.lrange(f"plate:ops:{env}", 0, OPS_KEPT - 1)
            pipe.zrange(PENDING, 0, PENDING_SHOWN - 1)
            results = pipe.execute()
        ids = [i.decode() for i in results[-1]]
        raws = self.redis.mget([key_req(i) for i in ids]) if ids else []
        out: dict[str, Any] = {"releases": {}, "locks": {}, "operations": {}}
        for n, name in enumerate(names):
            release, lock = results[2 * n : 2 * n + 2]
            out["releases"][name] = loads(release)
            out["locks"][name] = loads(lock)
        for n, env in enumerate(envs):
            out["operations"][env] = [json.loads(o) for o in results[2 * len(names) + n]]
        pending = [Request.from_storage(r) for r in raws if r]
        out["pending"] = [r for r in pending if r.status is Status.PENDING]
        return out

    def releases_and_locks(self, keys: Sequence[str]) -> dict[str, Any]:
        """The release record and lock holder of each name in `keys`, in one round trip (`/plate apps`)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for name in keys:
                pipe.get(f"plate:release:{name}")
                pipe.get(key_lock(name))
            results = pipe.execute()
        return {
            "releases": {k: loads(results[2 * n]) for n, k in enumerate(keys)},
            "locks": {k: loads(results[2 * n + 1]) for n, k in enumerate(keys)},
        }

    def home_opened(self, user: str, now: float, *, window: float) -> None:
        with self.redis.pipeline() as pipe:
            pipe.zadd(HOME_VIEWERS, {user: now})
            pipe.zremrangebyscore(HOME_VIEWERS, "-inf", now - window)
            pipe.execute()

    def home_viewers(self, since: float, limit: int) -> list[str]:
        """Users who opened Home since `since`, most recent first."""
        return texts(self.redis.zrevrangebyscore(HOME_VIEWERS, "+inf", since, start=0, num=limit))
