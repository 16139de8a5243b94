"""Every public method of every store part raises plate-bot's `Unavailable` when Redis cannot be reached,
never a raw redis exception (14 methods used to let them escape). Redis here is a closed loopback port."""

from __future__ import annotations

import inspect
import socket
from collections.abc import Callable
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.errors import Unavailable
from core.requests import new_request
from core.store import Store
from workers.watcher.store import WatchStore

REQUEST = new_request(
    "0a1b2c3d4e5f", verb="deploy", env="stg", requester="U0BOB", channel="C0D", now=1.0, ttl=60, approvals_required=0
)

CALLS: dict[str, Callable[[Any], object]] = {
    "create": lambda s: s.create(REQUEST, lock_env="stg", take_lock=True),
    "forget": lambda s: s.forget(REQUEST.id, lock_env="stg"),
    "get": lambda s: s.get(REQUEST.id),
    "transition": lambda s: s.transition(REQUEST.id, lambda r: r),
    "due_for_expiry": lambda s: s.due_for_expiry(2.0),
    "lock_holder": lambda s: s.lock_holder("stg"),
    "refresh_lock": lambda s: s.refresh_lock("stg", REQUEST.id, 60),
    "release_lock": lambda s: s.release_lock("stg", REQUEST.id),
    "locks": lambda s: s.locks(),
    "job_state": lambda s: s.job_state("plate-x"),
    "save_job_state": lambda s: s.save_job_state("plate-x", outcome="failed"),
    "save_backup": lambda s: s.save_backup("stg", 3, values="v", manifest="m", meta={}),
    "backup": lambda s: s.backup("stg", 3),
    "backup_revisions": lambda s: s.backup_revisions("stg"),
    "append_audit": lambda s: s.append_audit({"event": "x"}),
    "audit_entries": lambda s: s.audit_entries(),
    "audit_range": lambda s: s.audit_range(),
    "cache_images": lambda s: s.cache_images({"sha256:" + "a" * 64: {"v": 1}}, 60),
    "cached_images": lambda s: s.cached_images(["sha256:" + "a" * 64]),
    "save_change": lambda s: s.save_change("stg", {"request": REQUEST.id}),
    "change": lambda s: s.change(REQUEST.id),
    "changes": lambda s: s.changes("stg"),
    "record_stats": lambda s: s.record_stats({"jobs": 1.0}),
    "stats": lambda s: s.stats(),
    "record_latest": lambda s: s.record_latest({"last_success|stg|web|deploy": 1.0}),
    "approvals_and_locks": lambda s: s.approvals_and_locks(),
    "save_release": lambda s: s.save_release("stg", {}),
    "release": lambda s: s.release("stg"),
    "record_operation": lambda s: s.record_operation("stg", {}),
    "home_snapshot": lambda s: s.home_snapshot(["stg"]),
    "releases_and_locks": lambda s: s.releases_and_locks(["stg", "prod/plate-prod/plate-api"]),
    "home_opened": lambda s: s.home_opened("U0BOB", 1.0, window=60),
    "home_viewers": lambda s: s.home_viewers(0.0, 10),
    "lease": lambda s: s.lease("watch", "a", 1.0).acquire(),
    "lease_holder": lambda s: s.lease_holder("watch"),
    "incident": lambda s: s.incident("k"),
    "active_incidents": lambda s: s.active_incidents(),
    "save_incident": lambda s: s.save_incident("k", "{}", expected=0, active=True),
    "release_baseline": lambda s: s.release_baseline("secret", "prod/plate-prod/plate-api", 3, 1.0),
    "claim_notice": lambda s: s.claim_notice("prod/plate-prod/plate-api:1:3", "w1", 1.0),
    "notice_posted": lambda s: s.notice_posted("prod/plate-prod/plate-api:1:3", "w1", "1.000100", 1.0),
    "notice": lambda s: s.notice("prod/plate-prod/plate-api:1:3"),
}


def _public(cls: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_")}


@pytest.fixture(scope="module")
def nowhere() -> redis.Redis:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    # No retries: redis-py's default (3, with backoff) spent ~3 s on every call, and adds nothing here.
    return redis.Redis(port=port, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))


def test_the_table_covers_every_public_method() -> None:
    assert _public(Store) | _public(WatchStore) == set(CALLS) | {"ping"}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_redis_away_is_unavailable_never_a_redis_error(nowhere: redis.Redis, name: str) -> None:
    store = WatchStore(nowhere) if name in _public(WatchStore) - _public(Store) else Store(nowhere)
    with pytest.raises(Unavailable):
        CALLS[name](store)


def test_ping_says_false(nowhere: redis.Redis) -> None:
    assert Store(nowhere).ping() is False
