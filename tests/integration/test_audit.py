"""The audit trail end to end: every request, decision, lock and job leaves a record in the Redis stream,
a `plate.audit` log line and (when configured) a line in the audit channel; a worker killed mid-job is
recorded through RQ's abandoned-job cleanup, the path the bot's housekeeper takes."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from rq.registry import StartedJobRegistry

import core.store
from core.requests import Status
from core.store import Store
from sandbox.helm import read_releases, recorded_argv, set_behaviour
from tests.conftest import ROOT, Service
from tests.integration.releases import (
    approve_and_run,
    by_hand,
    command_and_check,
    configure,
    newest_request,
    sim_fixture,  # noqa: F401 - the `sim` fixture
)
from tests.processes import stop
from tests.waiting import wait_until


def events(service: Service, request_id: str) -> list[tuple[str, str]]:
    """(event, user or outcome) of one request's records, oldest first."""
    records = reversed(service.runtime.store.audit_entries(500, request=request_id))
    return [(r["event"], r.get("user") or r.get("outcome") or "") for r in records]


@pytest.fixture
def audited(plate_env):
    configure(plate_env, top={"audit_channel": "C0AUDIT"})
    return plate_env


def test_an_approved_rollback_leaves_every_record_in_order(
    audited, service: Service, sim, helm_bin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="plate.audit")
    for tag in ("1.4.0", "1.5.0"):
        by_hand(helm_bin, "prod", tag)
    sim.settle()
    request = command_and_check(service, "rollback prod")
    service.click("plate_approve", request.id, user="U0BOB")  # refused: changes nothing, records nothing
    request = approve_and_run(service, request, approver="U0CAROL")
    assert events(service, request.id) == [
        ("request.created", "U0BOB"),
        ("job.started", ""),  # the target check
        ("request.planned", ""),
        ("job.ended", "succeeded"),
        ("request.approved", "U0CAROL"),
        ("lock.taken", "U0BOB"),
        ("job.started", ""),  # the rollback
        ("job.ended", "succeeded"),
        ("lock.released", ""),
    ]
    records = service.runtime.store.audit_entries(500, request=request.id)
    approved = next(r for r in records if r["event"] == "request.approved")
    assert approved["detail"] == f"approved by U0CAROL · plan {request.plan_digest[:12]}"
    assert {r["env"] for r in records} == {"prod"} and {r["verb"] for r in records} == {"rollback"}
    ended = [r for r in records if r["event"] == "job.ended"]
    assert all(float(r["seconds"]) > 0 for r in ended)
    # One structured log line per record (here: the ones the bot process wrote; workers log their own).
    logged = [(r.event, r.request) for r in caplog.records if r.name == "plate.audit" and hasattr(r, "event")]
    assert ("request.created", request.id) in logged and ("request.approved", request.id) in logged
    # Mirrored to the audit channel, one line each, from the bot and from the workers.
    mirrored = [m.text for m in service.slack.messages("C0AUDIT")]
    assert len(mirrored) == len(records)
    assert any("*request.approved* · rollback `prod` · by <@U0CAROL> · requested by <@U0BOB>" in t for t in mirrored)
    assert any("*lock.released*" in t for t in mirrored)


def test_rejection_cancel_expiry_and_refusals_are_recorded(service: Service) -> None:
    listeners = service.runtime.listeners
    service.command("rollback prod 3")
    rejected = service.wait(lambda: service.request_ids() and newest_request(service))
    service.click("plate_reject", rejected.id, user="U0ALICE")
    service.wait(lambda: service.runtime.store.get(rejected.id).status is Status.REJECTED)
    service.wait(lambda: len(events(service, rejected.id)) == 2)
    assert events(service, rejected.id) == [("request.created", "U0BOB"), ("request.rejected", "U0ALICE")]

    service.command("rollback prod 2")
    cancelled = service.wait(lambda: (r := newest_request(service)).id != rejected.id and r)
    service.click("plate_cancel", cancelled.id, user="U0BOB")
    service.wait(lambda: len(events(service, cancelled.id)) == 2)
    assert events(service, cancelled.id)[-1] == ("request.cancelled", "U0BOB")

    service.command("rollback prod 1")
    expiring = service.wait(lambda: (r := newest_request(service)).id not in (rejected.id, cancelled.id) and r)
    listeners.services.clock = lambda: expiring.expires_at + 1
    assert listeners.expire_due() == 1
    assert events(service, expiring.id)[-1] == ("request.expired", "")

    service.command("rollback prod", channel="C0RANDOM")  # prod takes commands only in C0DEPLOYS
    service.wait(lambda: any(r["event"] == "request.refused" for r in service.runtime.store.audit_entries()))
    refused = next(r for r in service.runtime.store.audit_entries() if r["event"] == "request.refused")
    assert refused["user"] == "U0BOB" and refused["env"] == "prod" and "C0DEPLOYS" in refused["detail"]
    assert "request" not in refused  # nothing was created
    assert all(j.endswith("-plan") for j in service.runtime.queue.job_ids)  # only target checks, no rollback


def test_a_worker_killed_mid_rollback_is_recorded_lost_and_its_lock_released(
    service: Service, sim, helm_bin, helm_state, tmp_path: Path
) -> None:
    """kill -9 of `plate-bot worker` while `helm rollback` runs; then RQ's cleanup of abandoned jobs (the
    housekeeper's call, with the clock moved past the heartbeat's lapse) runs on_failure here."""
    by_hand(helm_bin, "stg", "1.4.0")
    by_hand(helm_bin, "stg", "1.5.0")
    set_behaviour(helm_state, rollback="hang")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PLATE_WORKER_HEARTBEAT": "1", "LOG_LEVEL": "WARNING"}
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [str(Path(sys.executable).with_name("plate-bot")), "worker", "--metrics-port", "0"],  # no /metrics
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        service.command("rollback stg")
        request = service.wait(lambda: service.request_ids() and newest_request(service))

        # Kill only once helm is inside its wait (its pending revision is stored): earlier, helm has not yet
        # set up its own SIGTERM handling and the test would be about helm's start-up, not plate-bot.
        def helm_waiting() -> bool:
            if any(a[0] == "rollback" for a in recorded_argv(helm_state)) and read_releases(
                helm_state, "plate-web", "plate-stg"
            )[-1]["info"]["status"].startswith("pending"):
                return True
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            return False

        wait_until(helm_waiting, 60, "helm rollback to wait", diagnose=(tmp_path / "worker.log").read_text)
        time.sleep(0.5)  # the fake helm stores the pending revision a moment before it handles SIGTERM
        assert service.runtime.store.lock_holder("stg")["state"] == "running"
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
        # The work-horse dies with its worker, and helm (SIGTERM) with the horse: the revision fails.
        service.wait(lambda: read_releases(helm_state, "plate-web", "plate-stg")[-1]["info"]["status"] == "failed", 30)

        queue = service.runtime.queue
        StartedJobRegistry(queue=queue, job_class=queue.job_class).cleanup(timestamp=time.time() + 3600)

        assert events(service, request.id)[-3:] == [("job.started", ""), ("job.lost", "lost"), ("lock.released", "")]
        assert service.runtime.store.lock_holder("stg") is None
        assert service.runtime.store.change(request.id)["outcome"] == "lost"
        lost = next(r for r in service.runtime.store.audit_entries(request=request.id) if r["event"] == "job.lost")
        assert lost["detail"] == "AbandonedJobError" and lost["job"] == request.job_id
    finally:
        stop(worker, 0, group=True)  # already killed, unless the test failed before
        for proc in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if any(str(helm_bin) in a for a in proc.info["cmdline"] or []):
                    proc.kill()
        log.close()


def test_the_stream_is_bounded_and_only_appended_to(redis_conn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core.store.records, "AUDIT_MAXLEN", 50)
    store = Store(redis_conn)
    for i in range(1000):
        store.append_audit({"event": "job.started", "at": str(i)})
    # Trimming is approximate (whole stream nodes), so the stream stays near the bound, never far above.
    assert 50 <= redis_conn.xlen(core.store.records.AUDIT) <= 250
    newest = store.audit_entries(3)
    assert [r["at"] for r in newest] == ["999", "998", "997"]
    # Append and read only: nothing edits or deletes a record (audit_range is the export's read).
    readers = ("append_audit", "audit_entries", "audit_range")
    assert not [name for name in dir(Store) if "audit" in name and name not in readers]
