"""The bot -> worker seam: approved requests become RQ jobs on the `plate` queue.

The job names one entry point (`workers.jobs.run`) and carries the request; the worker picks the
procedure for the request's verb. The job id is derived from the request id, and the enqueue is added
to the same MULTI as the approval, so one approval makes at most one job.
"""

from __future__ import annotations

import redis
from redis.client import Pipeline
from rq import Queue
from rq.callbacks import Callback

from bot.approvals import Request
from bot.errors import Unavailable

QUEUE_NAME = "plate"
JOB_ENTRY = "workers.jobs.run"
PLAN_ENTRY = "workers.jobs.plan"
PLAN_TIMEOUT = 600
ON_FAILURE = "workers.jobs.on_failure"
RESULT_TTL = 7 * 86400


def queue_for(connection: redis.Redis) -> Queue:
    return Queue(QUEUE_NAME, connection=connection)


def _enqueue(
    queue: Queue,
    request: Request,
    *,
    entry: str,
    kind: str,
    job_id: str,
    timeout: int,
    pipe: Pipeline | None = None,
    unique: bool = False,
) -> None:
    queue.enqueue_call(
        entry,
        kwargs={"request": request.for_storage()},
        timeout=timeout,
        result_ttl=RESULT_TTL,
        failure_ttl=RESULT_TTL,
        job_id=job_id,
        description=f"{kind} {request.env} ({request.id})",
        meta={"request": request.id, "env": request.env, "verb": kind},
        on_failure=Callback(ON_FAILURE),
        pipeline=pipe,
        unique=unique,
    )


def enqueue(queue: Queue, pipe: Pipeline, request: Request, job_timeout: int) -> None:
    """Add the job for `request` to the caller's transaction (RQ ignores `unique` inside a pipeline,
    so at-most-once comes from the transaction that approved the request)."""
    _enqueue(queue, request, entry=JOB_ENTRY, kind=request.verb, job_id=request.job_id, timeout=job_timeout, pipe=pipe)


def enqueue_plan(queue: Queue, request: Request) -> None:
    """The read-only pre-approval job of a request (no lock: it changes nothing)."""
    job_id = f"{request.job_id}-plan"
    try:
        _enqueue(queue, request, entry=PLAN_ENTRY, kind="plan", job_id=job_id, timeout=PLAN_TIMEOUT, unique=True)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise Unavailable("plate-bot cannot reach Redis right now; the plan was not started.") from exc
