"""Redis away while a deploy runs: a short outage is ridden out, a long one ends the job as lost.

Before: the worker's job heartbeat raised on the first refused connection, RQ's worker quit, the
work-horse died with it (workers.lifetime) and helm got SIGTERM, so `--atomic` rolled the release back
over a 2 s Redis blip. Now (workers/runner.py) heartbeats are retried while Redis is away for less than
the lost-job threshold (3 heartbeats since the last one that landed); past it the job is stopped and
reported lost as before.
"""

from __future__ import annotations

import time

import psutil
import pytest

from sandbox.helm import read_releases, set_behaviour
from tests.conftest import Service
from tests.faults.conftest import PrivateRedis, install_release, processes_running, thread_text
from tests.waiting import wait_until

pytestmark = pytest.mark.faults


def _upgrade(helm_bin) -> psutil.Process | None:
    procs = [p for p in processes_running(str(helm_bin)) if "upgrade" in (p.info.get("cmdline") or [])]
    return procs[0] if procs else None


def _deploy_until_helm_waits(service: Service, helm_bin, helm_state, seconds: float) -> psutil.Process:
    """/plate deploy stg; helm upgrade applies, then waits `seconds` (a long --wait) and succeeds."""
    install_release(helm_bin, "plate-stg", "plate-stg")
    set_behaviour(helm_state, upgrade="slow", slow_seconds=seconds)
    assert service.command("deploy stg 1.5.0")[0] == 200
    helm = wait_until(lambda: _upgrade(helm_bin), 30, "helm upgrade to start")
    pending = lambda: read_releases(helm_state, "plate-web", "plate-stg")[-1]["info"]["status"] == "pending-upgrade"  # noqa: E731
    wait_until(pending, 30, "helm upgrade to be waiting on the rollout")
    return helm


@pytest.fixture
def keeper_on_private_redis(service_on_private_redis: Service) -> Service:
    service_on_private_redis.runtime.housekeeper.interval = 0.3
    service_on_private_redis.runtime.housekeeper.start()
    return service_on_private_redis


def test_a_short_redis_outage_mid_deploy_is_ridden_out(
    keeper_on_private_redis, private_redis: PrivateRedis, workers, cluster, helm_bin, helm_state
) -> None:
    """Redis stopped for 2 s while `helm upgrade` waits (heartbeat 2 s: lost-job threshold 6 s): helm
    is not killed, the worker lives on, the deploy finishes and the thread gets its report; nothing
    is reported lost and the lock is free at the end."""
    service = keeper_on_private_redis
    worker = workers(PLATE_WORKER_HEARTBEAT="2")
    helm = _deploy_until_helm_waits(service, helm_bin, helm_state, seconds=8)

    private_redis.stop()
    time.sleep(2)
    private_redis.start()

    assert helm.is_running() and helm.status() != psutil.STATUS_ZOMBIE, "helm was stopped by the outage"
    wait_until(lambda: " *deploy stg* — succeeded" in thread_text(service), 60, "the deploy's report")
    revisions = read_releases(helm_state, "plate-web", "plate-stg")
    assert [r["info"]["status"] for r in revisions] == ["superseded", "deployed"]  # no rollback
    assert worker.proc.poll() is None
    assert "was lost" not in thread_text(service)
    assert service.runtime.store.lock_holder("stg") is None
    assert "redis is back; the job went on" in worker.output()


def test_a_redis_outage_past_the_threshold_ends_the_job_as_lost(
    keeper_on_private_redis, private_redis: PrivateRedis, workers, cluster, helm_bin, helm_state
) -> None:
    """Redis stopped for longer than the threshold (heartbeat 1 s: 3 s): the worker stops the job (helm
    gets SIGTERM, `--atomic` rolls back) and exits; once Redis is back the job is reported lost, the
    lock is freed, and the next worker adds the helm status."""
    service = keeper_on_private_redis
    worker = workers(PLATE_WORKER_HEARTBEAT="1")
    helm = _deploy_until_helm_waits(service, helm_bin, helm_state, seconds=60)

    private_redis.stop()
    psutil.wait_procs([helm], timeout=30)
    assert not helm.is_running() or helm.status() == psutil.STATUS_ZOMBIE
    worker.proc.wait(60)  # the worker gives up (as before the fix, only later)
    private_redis.start()

    wait_until(lambda: "was lost" in thread_text(service), 30, "the lost-job report")
    assert service.runtime.store.lock_holder("stg") is None
    revisions = read_releases(helm_state, "plate-web", "plate-stg")
    assert [r["info"]["status"] for r in revisions] == ["superseded", "failed", "deployed"]
    assert "context canceled" in revisions[1]["info"]["description"]
    assert "past the lost-job threshold" in worker.output()
    workers()
    wait_until(lambda: "Now: Release" in thread_text(service), 30, "the helm status from the next worker")
