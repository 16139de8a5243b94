"""core.queue's allow-list: what a worker refuses before forking, and what PlateJob never imports."""

from __future__ import annotations

import json
import pickle
import zlib

import fakeredis
import pytest
from rq.callbacks import Callback
from rq.serializers import JSONSerializer

from core.queue import ENTRY, ON_FAILURE, JobKind, PlateJob, RefusedJob, enqueue_plan, queue_for, refusal
from core.requests import Request


@pytest.fixture
def conn() -> fakeredis.FakeStrictRedis:
    return fakeredis.FakeStrictRedis()


def _request() -> Request:
    return Request(
        id="r1", verb="deploy", env="stg", requester="U0BOB", channel="C0DEPLOYS", created_at=1.0,
        expires_at=2.0, approvals_required=0, args={"version": "1.5.0"},
    )  # fmt: skip


def _restored(conn, func: str, *, args=(), kwargs=None, **fields) -> PlateJob:
    job = PlateJob.create(func, args=args, kwargs=kwargs or {}, connection=conn, serializer=JSONSerializer, **fields)
    job.save()
    return PlateJob.fetch(job.id, connection=conn, serializer=JSONSerializer)


def test_plate_jobs_are_json_and_admitted(conn) -> None:
    enqueue_plan(queue_for(conn), _request())
    raw = conn.hgetall("rq:job:plate-r1-plan")
    tuple_ = json.loads(zlib.decompress(raw[b"data"]))
    assert tuple_[0] == "workers.jobs.plan" and json.loads(raw[b"meta"])["env"] == "stg"
    job = queue_for(conn).fetch_job("plate-r1-plan")
    assert refusal(job) is None and job.failure_callback is not None


@pytest.mark.parametrize(
    ("func", "args", "kwargs", "says"),
    [
        ("os.system", ("touch /tmp/x",), {}, "`os.system` is not a plate-bot entry point"),
        ("subprocess.call", (["id"],), {}, "`subprocess.call` is not a plate-bot entry point"),
        (ENTRY[JobKind.RUN], ("positional",), {}, "keyword arguments only"),
        (ENTRY[JobKind.RUN], (), {"request": "{}", "cmd": "rm"}, "not a plate-bot request"),
        (ENTRY[JobKind.RUN], (), {"request": {"nested": 1}}, "not a plate-bot request"),
    ],
)
def test_foreign_functions_and_arguments_are_refused(conn, func, args, kwargs, says) -> None:
    job = _restored(conn, func, args=args, kwargs=kwargs)
    assert says in (refusal(job) or "")
    if func != ENTRY[JobKind.RUN]:
        with pytest.raises(RefusedJob):
            _ = job.func  # never imported, even if something asked


def test_pickles_and_garbage_are_never_loaded(conn) -> None:
    job = _restored(conn, ENTRY[JobKind.RUN], kwargs={"request": "{}"})
    for payload in (pickle.dumps((ENTRY[JobKind.RUN], None, (), {"request": "{}"})), b"\x00\xff garbage"):
        conn.hset(job.key, "data", zlib.compress(payload))
        job = PlateJob.fetch(job.id, connection=conn, serializer=JSONSerializer)
        assert "not JSON" in (refusal(job) or "")


def test_foreign_callbacks_and_webhooks_are_dropped_and_refused(conn) -> None:
    job = _restored(conn, ENTRY[JobKind.RUN], kwargs={"request": "{}"}, on_failure=Callback(ON_FAILURE))
    conn.hset(job.key, mapping={
        "failure_callback_name": "os.system",
        "success_callback_name": "builtins.exec",
        "webhooks": json.dumps([{"url": "http://169.254.169.254/", "job_status": "failed"}]),
    })  # fmt: skip
    job = PlateJob.fetch(job.id, connection=conn, serializer=JSONSerializer)
    assert job.failure_callback is None and job.success_callback is None and job.webhooks == []
    reason = refusal(job) or ""
    assert "failure callback `os.system`" in reason and "success callback" in reason and "webhooks" in reason


def test_the_entry_table_names_the_functions_workers_run() -> None:
    """core.queue.ENTRY holds dotted paths (how RQ stores a job's function): each must resolve to the
    worker's entry point of that kind, and the failure callback to workers.lost's."""
    import importlib

    from workers import jobs, lost

    def resolve(path: str) -> object:
        module, _, name = path.rpartition(".")
        return getattr(importlib.import_module(module), name)

    assert resolve(ENTRY[JobKind.RUN]) is jobs.run
    assert resolve(ENTRY[JobKind.PLAN]) is jobs.plan
    assert resolve(ENTRY[JobKind.REPORT_LOST]) is jobs.report_lost
    assert resolve(ON_FAILURE) is lost.on_failure
