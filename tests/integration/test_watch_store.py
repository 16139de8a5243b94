"""The watcher's Redis state in core.store (real Redis): the leader lease and incident compare-and-set."""

from __future__ import annotations

import socket
import time
from typing import Any, cast

import pytest
import redis

from core.errors import Unavailable, UserError
from core.store import Store
from tests.waiting import wait_until
from workers.watcher.classify import Observation, Reason, Workload
from workers.watcher.incidents import Effect, Incident, on_observation
from workers.watcher.store import WatchStore
from workers.watcher.watcher import Lease, Watcher


def test_lease_is_taken_once_renewed_and_released_only_by_its_holder(redis_conn: redis.Redis) -> None:
    watch_keys = WatchStore(redis_conn)
    a, b = watch_keys.lease("watch", "a", 30), watch_keys.lease("watch", "b", 30)
    assert a.acquire() is True
    assert b.acquire() is False
    redis_conn.pexpire("plate:lease:watch", 1000)
    assert a.acquire() is True  # the holder extends it, to a full ttl
    assert redis_conn.pttl("plate:lease:watch") > 20_000
    assert b.renew() is False
    assert b.release() is False
    assert watch_keys.lease_holder("watch") == "a"
    assert a.release() is True
    assert watch_keys.lease_holder("watch") is None
    short = watch_keys.lease("watch", "b", 0.2)
    assert short.acquire() is True
    wait_until(lambda: watch_keys.lease_holder("watch") is None, 5, "the lease to lapse on its own")
    assert a.acquire() is True
    assert short.renew() is False and short.release() is False  # lapsed, now a's: b can neither extend nor drop it
    assert watch_keys.lease_holder("watch") == "a"


def test_lease_object_stops_acting_before_the_key_can_expire(redis_conn: redis.Redis) -> None:
    now = [100.0]
    lease = Lease(WatchStore(redis_conn), "a", ttl=10, clock=lambda: now[0])
    other = Lease(WatchStore(redis_conn), "b", ttl=10, clock=lambda: now[0])
    assert lease.try_once() and lease.held()
    assert not other.try_once() and not other.held()
    now[0] += 7.9
    assert lease.held()
    now[0] += 0.2  # 80% of the ttl since the last renewal: no longer sure, so no longer leading
    assert not lease.held()
    lease.stop(release=True)
    assert other.try_once() and other.held()


def test_lease_hand_over_with_real_threads_never_two_leaders(
    redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ttl 1 s, each Lease renewing on its own thread. A leader cut off from Redis stops acting at 80% of the
    ttl after its last renewal and the standby takes over once the key lapses (within one ttl of that
    renewal plus one attempt interval), never both at once; a leader that releases hands over at the
    standby's next attempt."""
    ttl = 1.0
    leader, standby = Lease(WatchStore(redis_conn), "a", ttl), Lease(WatchStore(redis_conn), "b", ttl)
    leader.start()
    wait_until(leader.held, 5, "the first lease")
    standby.start()
    try:
        assert not standby.try_once() and leader.held()

        def cut_off() -> bool:
            raise Unavailable("Redis away")

        monkeypatch.setattr(leader._lock, "acquire", cut_off)  # its renewals fail from now on
        cut = time.monotonic()
        lost_at: list[float] = []

        def standby_leads() -> bool:
            assert not (leader.held() and standby.held()), "two leaders"
            if not leader.held() and not lost_at:
                lost_at.append(time.monotonic())
            return standby.held()

        wait_until(standby_leads, 5, "the standby to take over", interval=0.005)
        taken = time.monotonic()
        assert lost_at and lost_at[0] - cut <= 0.8 * ttl + 0.1  # stopped acting at 80% of the ttl
        assert taken - cut <= ttl + ttl / 3 + 0.3  # the key lapsed within one ttl; the next attempt took it
        assert redis_conn.get("plate:lease:watch") == b"b"

        third = Lease(WatchStore(redis_conn), "c", ttl)
        third.start()
        try:
            assert not third.try_once()
            standby.stop(release=True)  # SIGTERM: released at once
            released = time.monotonic()
            wait_until(third.held, 5, "the third lease after the release", interval=0.005)
            assert time.monotonic() - released <= ttl / 3 + 0.3  # its next attempt, not a ttl later
            assert redis_conn.get("plate:lease:watch") == b"c"
        finally:
            third.stop(release=True)
    finally:
        leader.stop(release=False)
        standby.stop(release=True)


def test_incident_compare_and_set_and_the_active_index(redis_conn: redis.Redis) -> None:
    watch_keys = WatchStore(redis_conn)
    obs = Observation("prod", Workload("Deployment", "web", "plate-prod"), Reason.IMAGE_PULL, "x", "pod/web-1")
    inc, _ = on_observation(None, obs, 1000.0, channel="C0INC", production=True)
    first = inc.evolve(v=1)
    assert watch_keys.save_incident(inc.key, first.for_storage(), expected=0, active=True)
    assert watch_keys.save_incident(inc.key, first.for_storage(), expected=0, active=True) is False  # someone was first
    assert watch_keys.active_incidents() == [first.for_storage()]
    done = first.posted(Effect.ROOT, 1001, "1.0").resolved(1002).posted(Effect.RESOLUTION, 1003).evolve(v=2)
    assert watch_keys.save_incident(inc.key, done.for_storage(), expected=1, active=done.active) is True
    assert watch_keys.active_incidents() == []  # nothing owed: out of the index, still readable by key
    assert Incident.from_storage(str(watch_keys.incident(inc.key))) == done


def _settling_watcher(redis_client: redis.Redis) -> Watcher:
    """A Watcher that is not running: only its round and settle() are used (Slack, Kubernetes and helm are
    never called, so their factories refuse)."""
    from config.environments import parse_config
    from tests.conftest import plate_config

    def unused(_env: object) -> Any:
        raise AssertionError("settle() must not reach Kubernetes or helm")

    slack = cast(Any, None)  # settle() never talks to Slack
    return Watcher(parse_config(plate_config()), Store(redis_client), slack, kube_for=unused, helm_for=unused)


def _obs(reason: Reason) -> Observation:
    return Observation("prod", Workload("Deployment", "web", "plate-prod"), reason, f"{reason} seen", "pod/web-1")


def test_settle_keeps_the_round_while_redis_is_away(redis_url: str) -> None:
    """Redis refuses connections while a round settles: the round's observations stay for the next
    round (the loop waits and tries again) instead of being lost with the batch."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    away = _settling_watcher(redis.Redis(port=port, socket_connect_timeout=0.2))
    away.round.add(_obs(Reason.IMAGE_PULL), 1000.0)
    with pytest.raises(UserError):
        away.settle()
    assert [k for k, _ in away.round.pending()] == [_obs(Reason.IMAGE_PULL).key]

    back = _settling_watcher(redis.Redis.from_url(redis_url))
    back.round = away.round  # the same round, once Redis answers
    back.round.add(_obs(Reason.IMAGE_PULL), 1001.0)
    back.settle()
    assert back.round.pending() == []
    assert back.incidents[_obs(Reason.IMAGE_PULL).key].count == 2


def test_settle_drops_a_corrupt_record_and_settles_the_rest(redis_conn: redis.Redis) -> None:
    """An incident record that cannot be read (here: not JSON) drops that key's observations with a
    logged error; the other keys of the round settle, and the next round is not stuck on it."""
    watcher = _settling_watcher(redis_conn)
    bad, good = _obs(Reason.IMAGE_PULL), _obs(Reason.CRASH_LOOP)
    redis_conn.set(f"plate:incident:{bad.key}", "{not json")
    watcher.round.add(bad, 1000.0)
    watcher.round.add(good, 1000.0)
    watcher.settle()
    assert watcher.round.pending() == []
    assert bad.key not in watcher.incidents and watcher.incidents[good.key].count == 1
