"""SIGTERM with real processes: `plate-bot serve` drains and exits, `plate-bot worker` finishes its job
(warm shutdown) or, told twice, leaves it to the lost-job handling, which tells the thread."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import redis

from core.requests import Status
from core.store import Store
from sandbox.helm import set_behaviour
from sandbox.kubeapi import FakeKubeAPI
from sandbox.signing import post, sign, slash_body
from sandbox.slack import FakeSlack
from tests.conftest import SIGNING_SECRET, Service
from tests.integration.procs import get_json, processes, serving_url, stderr_of, up
from tests.waiting import wait_until


def env_of(plate_env: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in plate_env.items() if k.isupper()}


def command(base: str, text: str, user: str = "U0BOB", **kw: str) -> int:
    form = slash_body(text, user=user, trigger_id=f"trig-{time.monotonic_ns()}", **kw)
    status, _h, _d = post(base + "/slack/events", form, sign(SIGNING_SECRET, form))
    return status


def the_thread(fake_slack: FakeSlack) -> str:
    """The request's thread as text; empty until the card is posted."""
    cards = fake_slack.messages("C0DEPLOYS")
    return fake_slack.render_thread("C0DEPLOYS", cards[0].ts) if cards else ""


def finished_after(fake_slack: FakeSlack, moment: float) -> bool:
    """The job's status message turned "succeeded" after `moment`: the job was still running then."""
    done = [c.at for c in fake_slack.calls_to("chat.update") if "succeeded" in json.dumps(c.params)]
    return bool(done) and min(done) > moment


def test_serve_drains_in_flight_work_refuses_new_requests_and_exits_0(
    plate_env: dict[str, Any], fake_slack: FakeSlack, redis_url: str, tmp_path: Path
) -> None:
    with processes(env_of(plate_env), tmp_path) as procs:
        serve = procs.start("serve", "--host", "127.0.0.1", "--port", "0")
        base = serving_url(serve)
        up(base + "/healthz", serve)
        assert get_json(base + "/readyz")[0] == 200
        fake_slack.fail_next("chat.postMessage", delay=3.0)  # the card post, after the ack, is slow
        assert command(base, "status stg") == 200  # acked at once; the listener is still posting
        wait_until(lambda: fake_slack.calls_to("chat.postMessage"), what="the card post to start")
        os.kill(serve.pid, signal.SIGTERM)
        assert wait_until(lambda: get_json(base + "/readyz")[0] == 503, what="not ready") is True
        assert get_json(base + "/readyz")[1]["draining"] is True
        assert command(base, "status prod") == 503  # new Slack requests are refused while draining
        assert get_json(base + "/healthz")[0] == 200  # alive while it drains: no restart
        assert serve.wait(10) == 0, stderr_of(serve)
        # The request in flight when SIGTERM came was finished: its card posted, its job queued.
        store = Store(redis.Redis.from_url(redis_url))
        [key] = store.redis.keys("plate:req:*")
        request = store.get(key.decode().rsplit(":", 1)[1])
        assert request is not None and request.message_ts and request.status is Status.APPROVED
        assert store.redis.llen("rq:queue:plate") == 1
        assert '"stopped"' in stderr_of(serve) and "Traceback" not in stderr_of(serve)


def test_embedded_serve_finishes_the_running_job_then_stops_http(
    plate_env: dict[str, Any], fake_slack: FakeSlack, kube_api: FakeKubeAPI, helm_state: Path, tmp_path: Path
) -> None:
    """REDIS_URL unset: the worker in the main thread warm-shuts (the job finishes), then HTTP drains."""
    kube_api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "plate-stg"}})
    set_behaviour(helm_state, delay=2.0)  # `helm status` takes 2 s: the job is running when SIGTERM comes
    env = {**env_of(plate_env), "REDIS_URL": None, "PLATE_DATA_DIR": str(tmp_path / "data")}
    with processes(env, tmp_path) as procs:
        serve = procs.start("serve", "--host", "127.0.0.1", "--port", "0")
        base = serving_url(serve)
        up(base + "/healthz", serve)
        assert command(base, "status stg") == 200
        wait_until(lambda: "helm status" in the_thread(fake_slack), what="the job to start")
        sigterm = time.time()
        os.kill(serve.pid, signal.SIGTERM)
        wait_until(lambda: get_json(base + "/readyz")[0] == 503, what="draining")
        assert command(base, "status prod") == 503
        assert serve.wait(15) == 0, stderr_of(serve)
        thread = the_thread(fake_slack)
        assert "status stg* — succeeded" in thread, thread
        assert finished_after(fake_slack, sigterm)


def test_worker_finishes_the_running_job_on_sigterm(
    service: Service, plate_env: dict[str, Any], fake_slack: FakeSlack, helm_state: Path, tmp_path: Path
) -> None:
    set_behaviour(helm_state, delay=2.0)
    with processes(env_of(plate_env), tmp_path) as procs:
        worker = procs.start("worker", "--metrics-port", "0")
        service.command("status stg")
        request = service.wait(lambda: (ids := service.request_ids()) and service.runtime.store.get(ids[0]))
        job_id = request.job_id
        service.wait(lambda: service.runtime.store.job_state(job_id).get("started"), timeout=15)
        sigterm = time.time()
        os.kill(worker.pid, signal.SIGTERM)
        assert worker.wait(15) == 0, stderr_of(worker)
        assert finished_after(fake_slack, sigterm)
        assert service.runtime.store.job_state(job_id).get("outcome") == "succeeded"
        assert "status stg* — succeeded" in the_thread(fake_slack)


def test_worker_told_twice_leaves_the_job_to_lost_job_handling_which_tells_the_thread(
    service: Service, plate_env: dict[str, Any], fake_slack: FakeSlack, helm_state: Path, tmp_path: Path
) -> None:
    set_behaviour(helm_state, delay=3.0)
    with processes(env_of(plate_env), tmp_path) as procs:
        worker = procs.start("worker", "--metrics-port", "0")
        service.command("deploy stg --dry-run")
        request = service.wait(lambda: (ids := service.request_ids()) and service.runtime.store.get(ids[0]))
        job_id = request.job_id
        service.wait(lambda: service.runtime.store.job_state(job_id).get("started"), timeout=15)
        os.kill(worker.pid, signal.SIGTERM)  # warm shutdown requested...
        time.sleep(1.2)  # RQ ignores a second signal within 1 s of the first (duplicate delivery)
        os.kill(worker.pid, signal.SIGTERM)  # ...and past the grace period: cold, the work-horse is killed
        worker.wait(15)
        assert "outcome" not in service.runtime.store.job_state(job_id)  # nobody has reported it yet
        service.runtime.housekeeper.run_once()  # any serve replica's housekeeping round
        assert service.runtime.store.job_state(job_id)["outcome"] == "lost"
        thread = the_thread(fake_slack)
        assert "was lost before it finished" in thread and "worker lost" in thread, thread
