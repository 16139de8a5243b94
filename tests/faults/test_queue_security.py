"""The queue is not a remote shell: a real `plate-bot worker` and real Redis, job hashes written by hand
as anyone with write access to Redis could.

RQ imports and calls whatever function a job names, and its default serializer is pickle, whose
loading alone can run code. plate-bot's jobs are JSON, and its worker refuses, before forking, any job
that is not one of plate-bot's entry points (core.queue.refusal): the job is FAILED with the reason,
logged on `plate.security`, never run, and the worker goes on with the next job.
"""

from __future__ import annotations

import json
import os
import pickle
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from tests.conftest import Service
from tests.faults.conftest import thread_text
from tests.waiting import wait_until

pytestmark = pytest.mark.faults


class _RunsOnLoad:
    """A pickle that runs a shell command as it is loaded (what `pickle.loads` of a job's data does)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def write_job(conn: redis.Redis, job_id: str, data: bytes, **fields: str) -> None:
    """A job hash and its queue entry, as RQ writes them, with whatever payload the writer chose."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    conn.hset(
        f"rq:job:{job_id}",
        mapping={
            "data": zlib.compress(data),
            "origin": "plate",
            "status": "queued",
            "created_at": stamp,
            "enqueued_at": stamp,
            "description": f"hand-written {job_id}",
            "timeout": "60",
            **fields,
        },
    )
    conn.sadd("rq:queues", "rq:queue:plate")
    conn.rpush("rq:queue:plate", job_id)


def fetch_job(job_id: str, conn: redis.Redis) -> Job:
    # JSON: the test itself must not load the pickles it wrote.
    return Job.fetch(job_id, connection=conn, serializer=JSONSerializer)


def failure_of(conn: redis.Redis, job_id: str) -> str:
    result = fetch_job(job_id, conn).latest_result()
    return result.exc_string if result is not None and result.exc_string else ""


def _finished(conn: redis.Redis, job_id: str) -> bool:
    return fetch_job(job_id, conn).get_status(refresh=True) in (JobStatus.FAILED, JobStatus.FINISHED)


def test_hostile_jobs_are_refused_and_the_worker_goes_on(service: Service, workers, tmp_path: Path) -> None:
    """Pickles (one naming `os.system`, one that runs a command as it loads), JSON jobs naming
    `os.system` and `subprocess.call`, and garbage: none runs (no marker file), each ends FAILED with
    the reason, each is a `plate.security` log line; the same worker then runs a legitimate job."""
    conn = service.runtime.connection
    marker = {name: tmp_path / f"pwned-{name}" for name in ("named", "onload", "json-system", "json-call")}
    hostile = {
        "evil-pickle-named": pickle.dumps(("os.system", None, (f"touch {marker['named']}",), {})),
        "evil-pickle-onload": pickle.dumps(("builtins.print", None, (_RunsOnLoad(f"touch {marker['onload']}"),), {})),
        "evil-json-system": json.dumps(["os.system", None, [f"touch {marker['json-system']}"], {}]).encode(),
        "evil-json-call": json.dumps(["subprocess.call", None, [["touch", str(marker["json-call"])]], {}]).encode(),
        "evil-garbage": b"\x00\xff not a job at all",
    }
    for job_id, data in hostile.items():
        write_job(conn, job_id, data)

    worker = workers()
    for job_id in hostile:
        wait_until(lambda job_id=job_id: _finished(conn, job_id), 30, f"{job_id} to end")

    assert not [m for m in marker.values() if m.exists()], "a hostile job ran"
    for job_id in hostile:
        assert fetch_job(job_id, conn).get_status(refresh=True) == JobStatus.FAILED, job_id
        assert "Refused by plate-bot" in failure_of(conn, job_id), job_id
    assert "`os.system` is not a plate-bot entry point" in failure_of(conn, "evil-json-system")
    assert "`subprocess.call` is not a plate-bot entry point" in failure_of(conn, "evil-json-call")
    assert "not JSON" in failure_of(conn, "evil-pickle-onload")
    log = worker.output()
    refused = [json.loads(line) for line in log.splitlines() if '"job refused' in line]
    assert {r["job"] for r in refused} == set(hostile) and {r["logger"] for r in refused} == {"plate.security"}
    assert worker.proc.poll() is None  # the worker lives on

    service.command("status stg")
    wait_until(
        lambda: any("status stg" in m.text and "succeeded" in m.text for m in service.slack.messages()),
        60,
        "a legitimate job on the same worker",
    )
    assert not [m for m in marker.values() if m.exists()]


def test_a_pickled_job_from_before_the_upgrade_is_refused_and_the_thread_told(
    service: Service, workers, helm_state
) -> None:
    """Rolling upgrade: a deploy queued by plate-bot < 0.2 (pickled, as RQ's default wrote it) is not
    run by the new worker; the request's thread is asked to make the request again, the environment
    lock is free, and the job is FAILED with the reason."""
    from sandbox.helm import recorded_argv

    conn = service.runtime.connection
    service.command("deploy stg 1.5.0")
    request = wait_until(lambda: (ids := service.request_ids()) and service.runtime.store.get(ids[0]), 30, "request")
    wait_until(lambda: service.runtime.queue.count == 1, 30, "the job to be queued")
    assert service.runtime.store.lock_holder("stg") is not None
    # What the old code had queued for this request: the same job, pickled (payload and meta).
    legacy = pickle.dumps(("workers.jobs.run", None, (), {"request": request.for_storage()}))
    conn.hset(f"rq:job:{request.job_id}", mapping={"data": zlib.compress(legacy), "meta": pickle.dumps({"env": "stg"})})

    workers()
    wait_until(lambda: "make the request again" in thread_text(service), 30, "the thread to be told")
    assert fetch_job(request.job_id, conn).get_status(refresh=True) == JobStatus.FAILED
    assert "queued by plate-bot before 0.2" in failure_of(conn, request.job_id)
    assert service.runtime.store.lock_holder("stg") is None
    assert service.runtime.store.job_state(request.job_id)["outcome"] == "refused"
    assert not [argv for argv in recorded_argv(helm_state) if "upgrade" in argv]  # nothing ran
