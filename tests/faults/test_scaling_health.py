"""What the worker autoscaler and the kubelet read, against real RQ state: serve's /scale (KEDA's metrics-api
trigger: jobs waiting plus jobs running) and the worker's /healthz (its own heartbeat, Redis), with a job
waiting, a job running, and Redis stopped under both."""

from __future__ import annotations

import pytest

from sandbox.helm import set_behaviour
from tests.conftest import Service
from tests.faults.conftest import PrivateRedis, install_release
from tests.integration.procs import get_json
from tests.processes import free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.faults


def scale(service: Service) -> tuple[int, dict]:
    return get_json(service.url.rsplit("/slack/events", 1)[0] + "/scale")


def test_scale_hint_and_worker_health_follow_the_queue_and_redis(
    service_on_private_redis, private_redis: PrivateRedis, workers, cluster, helm_bin, helm_state
) -> None:
    service = service_on_private_redis
    assert scale(service) == (200, {"queued": 0, "running": 0, "wanted": 0})

    install_release(helm_bin, "plate-stg", "plate-stg")
    set_behaviour(helm_state, upgrade="slow", slow_seconds=12)  # room for Redis to stop and start under load
    assert service.command("deploy stg 1.5.0")[0] == 200
    service.wait(lambda: service.runtime.queue.count == 1)
    assert scale(service) == (200, {"queued": 1, "running": 0, "wanted": 1})  # no worker yet: waiting

    port = free_port()
    health = f"http://127.0.0.1:{port}/healthz"
    # Heartbeat 10 s: the lost-job threshold (30 s) stays above the outage below, however slow the machine.
    worker = workers(metrics_port=port, PLATE_WORKER_HEARTBEAT="10")
    wait_until(lambda: scale(service)[1].get("running") == 1, 30, "the worker to start the job")
    assert scale(service) == (200, {"queued": 0, "running": 1, "wanted": 1})  # a running job holds its worker
    status, body = get_json(health)
    assert status == 200 and body["busy"] is True and body["redis"] is True, body

    # Redis away while the job runs: the autoscaler is told it cannot know (KEDA keeps its replicas); the
    # worker stays live, since a restart would kill helm mid-upgrade.
    private_redis.stop()
    assert scale(service)[0] == 503
    status, body = get_json(health)
    assert (status, body["redis"], body["busy"]) == (200, False, True), body
    private_redis.start()

    wait_until(lambda: scale(service) == (200, {"queued": 0, "running": 0, "wanted": 0}), 60, "the deploy to end")
    wait_until(lambda: get_json(health)[1].get("busy") is False, 10, "the worker to be idle")
    assert get_json(health)[0] == 200
    # Idle with Redis away: not healthy (it cannot take work); healthy again when Redis is back.
    private_redis.stop()
    status, body = get_json(health)
    assert (status, body["ok"], body["redis"]) == (503, False, False), body
    private_redis.start()
    wait_until(lambda: get_json(health)[0] == 200, 30, "the worker's health to recover with Redis")
    assert worker.proc.poll() is None, worker.output()
