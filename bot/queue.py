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

QUEUE_NAME = "plate"
JOB_ENTRY = "workers.jobs.run"
PLAN_ENTRY = "workers.jobs.plan"
PLAN_TIMEOUT = 600
ON_FAILURE = "workers.jobs.on_failure"
RESULT_TTL = 7 * 86400


def queue_for(connection: redis.Redis) -> Queue:
    return Queue(QUEUE_NAME, connection=connection)


def enqueue(queue: Queue, pipe: Pipeline, request: Request, job_timeout: int) -> None:
    """Add the job for `request` to the caller's transaction."""
    queue.enqueue_call(
        JOB_ENTRY,
        kwargs={"request": request.for_storage()},
        timeout=job_timeout,
        result_ttl=RESULT_TTL,
        failure_ttl=RESULT_TTL,
        job_id=request.job_id,
        description=f"{request.verb} {request.env} ({request.id})",
        meta={"request": request.id, "env": request.env, "verb": request.verb},
        on_failure=Callback(ON_FAILURE),
        pipeline=pipe,
    )


def enqueue_plan(queue: Queue, request: Request) -> None:
    """The read-only plan job of a deploy awaiting approval (no lock: it changes nothing)."""
    queue.enqueue_call(
        PLAN_ENTRY,
        kwargs={"request": request.for_storage()},
        timeout=PLAN_TIMEOUT,
        result_ttl=RESULT_TTL,
        failure_ttl=RESULT_TTL,
        job_id=f"{request.job_id}-plan",
        description=f"plan {request.env} ({request.id})",
        meta={"request": request.id, "env": request.env, "verb": "plan"},
        on_failure=Callback(ON_FAILURE),
        unique=True,
    )
