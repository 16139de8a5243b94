"""Observability: /metrics of serve (in-process runtime) and of a real `plate-bot worker` process, job
metrics that survive RQ's forked work-horses, and JSON logs that follow one request across bot and worker."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core import logs
from core.requests import Status
from sandbox.helm import set_behaviour
from sandbox.slack import FakeSlack
from tests.conftest import Service
from tests.integration.procs import PLATE_BOT, get_json, metrics, processes, sample, up
from tests.processes import free_port
from tests.waiting import wait_until


def base(service: Service) -> str:
    return service.url.rsplit("/slack/events", 1)[0]


def env_of(plate_env: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in plate_env.items() if k.isupper()}


@pytest.fixture
def exporting(monkeypatch: pytest.MonkeyPatch) -> None:
    """This serve exports the cluster-wide series (in production the watcher's leader does)."""
    monkeypatch.setenv("PLATE_CLUSTER_METRICS", "always")


def test_serve_metrics_count_commands_acks_approvals_locks_and_slack_trouble(
    exporting: None, service: Service, fake_slack: FakeSlack
) -> None:
    before = metrics(base(service) + "/metrics")
    service.command("frobnicate stg")
    service.command("deploy stg")  # no approval needed: queued at once, and stg is locked for it
    service.wait(lambda: service.runtime.queue.count == 1)
    service.command("deploy stg")  # refused: locked
    fake_slack.fail_next("chat.postMessage", status=429, retry_after=0)
    service.command("status stg")  # the card is posted after one 429
    service.wait(lambda: service.runtime.queue.count == 2)
    fake_slack.fail_next("chat.postMessage", error="not_in_channel")
    service.command("status stg", channel="C0ELSEWHERE")  # the card cannot be posted
    service.wait(lambda: fake_slack.hooks)
    after = metrics(base(service) + "/metrics")

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("plate_commands_total", verb="invalid", outcome="usage") == 1
    assert delta("plate_commands_total", verb="deploy", outcome="accepted") == 1
    assert delta("plate_commands_total", verb="deploy", outcome="locked") == 1
    assert delta("plate_commands_total", verb="status", outcome="accepted") == 2
    assert delta("plate_ack_seconds_count") == 5
    assert delta("plate_lock_conflicts_total") == 1
    assert delta("plate_approvals_total", outcome="auto") == 2
    assert delta("plate_slack_ratelimited_total", method="chat.postMessage") == 1
    assert delta("plate_slack_errors_total", code="not_in_channel") == 1
    assert sample(after, "plate_queue_depth") == 2 == service.runtime.queue.count  # read at scrape time
    assert sample(after, "plate_stats_up") == 1


def test_job_metrics_survive_the_work_horse_and_are_exported_once(
    exporting: None, service: Service, fake_slack: FakeSlack, plate_env: dict[str, Any], tmp_path: Path
) -> None:
    service.command("status stg")
    service.wait(lambda: service.runtime.queue.count == 1)
    serve_before = metrics(base(service) + "/metrics")
    fake_slack.fail_next("chat.postMessage", error="channel_not_found")  # the job's status message
    fake_slack.fail_next("chat.postMessage", status=429, retry_after=0)  # the job's reply, after one 429
    service.run_worker()  # RQ forks a work-horse: counters in its memory die with it
    page = metrics(base(service) + "/metrics")
    assert sample(page, "plate_jobs_total", kind="status", outcome="succeeded") == 1
    assert sample(page, "plate_job_seconds_count", kind="status") == 1
    assert sample(page, "plate_job_seconds_bucket", kind="status", le="+Inf") == 1
    assert sample(page, "plate_job_slack_errors_total", code="channel_not_found") == 1
    assert sample(page, "plate_job_slack_ratelimited_total", method="chat.postMessage") == 1
    assert sample(page, "plate_last_success_timestamp_seconds", env="stg", app="plate-web", kind="status") > 0
    # ...and they were the horse's, not this process's:
    assert sample(page, "plate_slack_errors_total", code="channel_not_found") == sample(
        serve_before, "plate_slack_errors_total", code="channel_not_found"
    )
    assert sample(page, "plate_queue_depth") == 0

    port = free_port()
    with processes({**env_of(plate_env), "PLATE_CLUSTER_METRICS": "auto"}, tmp_path) as procs:
        worker = procs.start("worker", "--metrics-port", str(port), "--metrics-host", "127.0.0.1")
        up(f"http://127.0.0.1:{port}/healthz", worker)
        status, health = get_json(f"http://127.0.0.1:{port}/healthz")
        assert (status, health["ok"], health["redis"], health["busy"]) == (200, True, True, False), health
        service.command("status stg")  # this one runs in the worker process
        wait_until(
            lambda: sample(metrics(base(service) + "/metrics"), "plate_jobs_total", kind="status",
                           outcome="succeeded") == 2,
            what="the worker process's job in serve's /metrics",
        )  # fmt: skip
        page = metrics(base(service) + "/metrics")
        assert sample(page, "plate_job_seconds_count", kind="status") == 2
        # The worker shows its own process, not the cluster-wide series (one exporter: no double counting).
        shown = metrics(f"http://127.0.0.1:{port}/metrics")
        assert ("plate_jobs_total", frozenset({("kind", "status"), ("outcome", "succeeded")})) not in shown
        assert ("plate_queue_depth", frozenset()) not in shown and sample(shown, "process_cpu_seconds_total") > 0
        assert get_json(f"http://127.0.0.1:{port}/nothing")[0] == 404


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """plate-bot's JSON logs into a file: the forked work-horse inherits the descriptor and writes there too."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    path = tmp_path / "plate.log"
    with path.open("a", buffering=1) as stream:
        logs.configure("INFO", stream=stream)
        try:
            yield path
        finally:
            root.handlers[:], _ = saved
            root.setLevel(saved[1])


def test_one_deploy_can_be_followed_by_request_id_across_bot_and_worker(
    service: Service, helm_state: Path, log_file: Path
) -> None:
    set_behaviour(helm_state, upgrade="fail")  # fail fast at `helm upgrade`: the logs are what matters
    service.command("deploy prod 1.5.0")
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()  # plan
    [request_id] = service.request_ids()
    service.click("plate_approve", request_id, user="U0ALICE")
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()  # deploy
    assert service.runtime.store.get(request_id).status is Status.APPROVED

    records = [json.loads(line) for line in log_file.read_text().splitlines() if line.startswith("{")]
    mine = [r for r in records if r.get("request_id") == request_id]
    by_logger: dict[str, list[str]] = {}
    for r in mine:
        by_logger.setdefault(r["logger"], []).append(r["message"])
    assert "request created" in by_logger["plate.bot"] and "request approved" in by_logger["plate.bot"]
    worker = [r for r in mine if r["logger"] == "plate.worker"]
    assert [r["message"] for r in worker].count("job started") == 2  # the plan job and the deploy job
    assert {r["job_id"] for r in worker} == {f"plate-{request_id}"}
    assert any(r["message"] == "job ended" and r.get("outcome") == "failed" for r in worker)
    approved = next(r for r in mine if r["message"] == "request approved")
    assert approved["user"] == "U0ALICE" and approved["level"] == "INFO" and "time" in approved
    assert all(r.get("request_id") in (None, request_id) for r in records)  # no line carries another id


def test_worker_metrics_port_in_use_stops_with_one_line(plate_env: dict[str, Any]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, **env_of(plate_env)}
        proc = subprocess.run(
            [*PLATE_BOT, "worker", "--metrics-port", str(port), "--metrics-host", "127.0.0.1"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("{")]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "--metrics-port" in lines[0] and "Traceback" not in proc.stderr
