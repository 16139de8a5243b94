"""A worker that dies mid-deploy: the job is failed, the lock freed, the thread told, no helm left behind.

What happens to the processes (decided in workers/lifetime.py and workers/runner.py):
- `kill -9` of the worker's process group kills the worker's main process. RQ runs the job in a forked
  work-horse in *its own* process group, and helm runs in its own session, so neither gets that signal.
  The horse asked the kernel for SIGKILL when its parent dies; helm asked for SIGTERM when the horse
  dies, and answers it like helm >= 3.13 does: the release is marked failed, helm exits.
- Nobody is left to report, so the bot's Housekeeper sweeps RQ's started-job registry; the job's
  heartbeat (1 s here, 3 missed beats) lapses and `on_failure` (workers.lost) posts "worker lost" and
  frees the lock. serve has no cluster access: the live helm status follows from a worker, which runs
  the `report_lost` job that on_failure queued.
"""

from __future__ import annotations

import json
import os
import signal

import psutil
import pytest
from rq.job import JobStatus

from core.queue import fetch_job
from core.requests import Status
from sandbox.helm import read_releases, set_behaviour
from tests.conftest import Service
from tests.faults.conftest import install_release, processes_running
from tests.waiting import wait_until

pytestmark = pytest.mark.faults


def _upgrades(helm_bin) -> list[psutil.Process]:
    """Live `helm upgrade` processes of this test. Not every helm: the lost-worker report itself runs
    `helm status` (from the bot's housekeeper or the surviving worker) at about the same moment."""
    # The cmdline read by process_iter: a short-lived helm call may be gone by now.
    return [p for p in processes_running(str(helm_bin)) if "upgrade" in (p.info.get("cmdline") or [])]


def _hanging_stg_deploy(service: Service, helm_bin, helm_state) -> tuple[str, psutil.Process]:
    """/plate deploy stg (no approval needed); the worker reaches `helm upgrade`, which hangs."""
    install_release(helm_bin, "plate-stg", "plate-stg")  # revision 1, live before the deploy
    set_behaviour(helm_state, upgrade="hang")
    status, _ = service.command("deploy stg 1.5.0")
    assert status == 200
    request = service.wait(lambda: (ids := service.request_ids()) and service.runtime.store.get(ids[0]))

    def upgrade() -> psutil.Process | None:
        procs = _upgrades(helm_bin)
        return procs[0] if procs else None

    helm = wait_until(upgrade, 30, "helm upgrade to start")
    pending = lambda: read_releases(helm_state, "plate-web", "plate-stg")[-1]["info"]["status"] == "pending-upgrade"  # noqa: E731
    wait_until(pending, 30, "helm upgrade to be waiting on the rollout")
    assert service.runtime.store.lock_holder("stg")["state"] == "running"
    return request.id, helm


def _thread(service: Service) -> str:
    card = service.slack.messages("C0DEPLOYS")[0]
    return service.slack.render_thread("C0DEPLOYS", card.ts)


def test_sigkilled_worker_is_reported_lost_and_frees_the_lock(
    keeper, workers, helm_bin, helm_state, plate_env, monkeypatch
) -> None:
    """kill -9 of the worker's process group mid-`helm upgrade` → within seconds: the job FAILED in RQ,
    the stg lock released, the thread says the worker was lost and to check the release; the status
    message says "worker lost"; the horse and helm are gone. serve has no helm and no kubeconfig: the
    current helm status follows from the next worker (the restarted pod)."""
    service = keeper
    worker = workers()
    # From here on serve (this process) has no cluster access; workers started later get it explicitly.
    cluster_access = {"HELM_BIN": str(helm_bin), "KUBECONFIG": plate_env["KUBECONFIG"]}
    monkeypatch.setenv("HELM_BIN", "/nonexistent/serve-has-no-helm")
    monkeypatch.delenv("KUBECONFIG")
    request_id, helm = _hanging_stg_deploy(service, helm_bin, helm_state)
    horse = helm.parent()
    assert horse is not None and horse.pid != worker.proc.pid and horse.ppid() == worker.proc.pid
    assert os.getpgid(horse.pid) != os.getpgid(worker.proc.pid)  # RQ's setpgrp: the group kill misses it

    worker.sigkill_group()

    # The kernel takes the horse down with the worker, and helm (SIGTERM) with the horse.
    psutil.wait_procs([horse, helm], timeout=30)
    assert not horse.is_running() or horse.status() == psutil.STATUS_ZOMBIE
    assert not helm.is_running() or helm.status() == psutil.STATUS_ZOMBIE
    assert _upgrades(helm_bin) == []
    # helm handled its SIGTERM like real helm: revision 2 failed ("context canceled"), and --atomic rolled
    # back to revision 1 as revision 3; nothing is left pending-upgrade (which would block every later deploy).
    revisions = read_releases(helm_state, "plate-web", "plate-stg")
    assert [r["info"]["status"] for r in revisions] == ["superseded", "failed", "deployed"]
    assert "context canceled" in revisions[1]["info"]["description"]

    request = service.runtime.store.get(request_id)
    wait_until(lambda: "was lost" in _thread(service), 20, "the lost-worker report")
    job = fetch_job(request.job_id, service.runtime.connection)
    # RQ's cleanup runs the failure callback (the report) and moves the job to FAILED in one sweep, in
    # that order: the report can be seen a moment before the status.
    wait_until(lambda: job.get_status(refresh=True) == JobStatus.FAILED, 30, "RQ to mark the job failed")
    assert service.runtime.store.lock_holder("stg") is None
    text = _thread(service)
    assert "check it with `/plate status`" in text and "follows as soon as a worker is free" in text
    workers(**cluster_access)  # the worker's Deployment starts a new pod
    wait_until(lambda: "Now: Release" in _thread(service), 30, "the helm status from a worker")
    text = _thread(service)
    assert "Now: Release `plate-web` revision 3: *deployed*" in text
    assert "could not be read" not in text
    status_message = [m for m in service.slack.messages("C0DEPLOYS") if m.thread_ts and m.text.startswith("deploy stg")]
    assert len(status_message) == 1 and "worker lost" in json.dumps(status_message[0].blocks)
    assert text.count("was lost") == 1  # reported once, though every housekeeping round looks
    assert service.runtime.store.get(request_id).status is Status.APPROVED


def test_horse_killed_while_worker_lives_is_reported_at_once(keeper, workers, helm_bin, helm_state) -> None:
    """The OOM killer takes the work-horse only: RQ fails the job without calling on_failure; plate's
    worker reports it lost and frees the lock itself, and keeps serving: the next deploy runs."""
    service = keeper
    worker = workers()
    _request_id, helm = _hanging_stg_deploy(service, helm_bin, helm_state)
    horse = helm.parent()
    os.kill(horse.pid, signal.SIGKILL)
    psutil.wait_procs([helm], timeout=30)
    assert not helm.is_running() or helm.status() == psutil.STATUS_ZOMBIE
    assert _upgrades(helm_bin) == []
    wait_until(lambda: "was lost" in _thread(service), 30, "the lost-worker report")
    assert service.runtime.store.lock_holder("stg") is None
    assert worker.proc.poll() is None  # the worker itself lives on
    wait_until(lambda: "Now: Release" in _thread(service), 30, "the helm status (the report_lost job)")

    set_behaviour(helm_state, upgrade="ok")
    service.slack.reset()
    service.command("status stg")
    wait_until(
        lambda: any("status stg" in m.text and "succeeded" in m.text for m in service.slack.messages()),
        30,
        "the next job on the same worker",
    )
