"""The watcher's Redis state in bot.store (real Redis): the leader lease and incident compare-and-set."""

from __future__ import annotations

import time
from dataclasses import replace

import redis

from bot.store import Store
from workers.watcher.classify import Observation, Reason, Workload
from workers.watcher.incidents import Effect, Incident, on_observation
from workers.watcher.watcher import Lease


def test_lease_is_taken_once_renewed_and_released_only_by_its_holder(redis_conn: redis.Redis) -> None:
    store = Store(redis_conn)
    assert store.acquire_lease("watch", "a", 30) is True
    assert store.acquire_lease("watch", "b", 30) is False
    assert store.acquire_lease("watch", "a", 30) is True  # the holder extends it
    assert store.renew_lease("watch", "b", 30) is False
    assert store.release_lease("watch", "b") is False
    assert store.lease_holder("watch") == "a"
    assert store.release_lease("watch", "a") is True
    assert store.lease_holder("watch") is None
    assert store.acquire_lease("watch", "b", 0.2) is True
    deadline = time.monotonic() + 5
    while store.lease_holder("watch") is not None:  # it lapses on its own
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert store.acquire_lease("watch", "a", 30) is True


def test_lease_object_stops_acting_before_the_key_can_expire(redis_conn: redis.Redis) -> None:
    now = [100.0]
    lease = Lease(Store(redis_conn), "a", ttl=10, clock=lambda: now[0])
    other = Lease(Store(redis_conn), "b", ttl=10, clock=lambda: now[0])
    assert lease.try_once() and lease.held()
    assert not other.try_once() and not other.held()
    now[0] += 7.9
    assert lease.held()
    now[0] += 0.2  # 80% of the ttl since the last renewal: no longer sure, so no longer leading
    assert not lease.held()
    lease.stop(release=True)
    assert other.try_once() and other.held()


def test_incident_compare_and_set_and_the_active_index(redis_conn: redis.Redis) -> None:
    store = Store(redis_conn)
    obs = Observation("prod", Workload("Deployment", "web", "plate-prod"), Reason.IMAGE_PULL, "x", "pod/web-1")
    inc, _ = on_observation(None, obs, 1000.0, channel="C0INC", production=True)
    first = replace(inc, v=1)
    assert store.save_incident(inc.key, first.for_storage(), expected=0, active=True)
    assert store.save_incident(inc.key, first.for_storage(), expected=0, active=True) is False  # someone was first
    assert store.active_incidents() == [first.for_storage()]
    done = replace(first.posted(Effect.ROOT, 1001, "1.0").resolved(1002).posted(Effect.RESOLUTION, 1003), v=2)
    assert store.save_incident(inc.key, done.for_storage(), expected=1, active=done.active) is True
    assert store.active_incidents() == []  # nothing owed: out of the index, still readable by key
    assert Incident.from_storage(str(store.incident(inc.key))) == done
