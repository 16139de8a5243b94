"""The bot -> worker seam: approved requests become RQ jobs on the `plate` queue.

A job has a kind (`JobKind`: the request's own procedure, its pre-approval plan, or the cluster half of
a lost-job report), carried in its meta and its arguments, never parsed back out of its id. `ENTRY` is
the one table of what a worker runs for each kind; the worker picks the procedure for the request's verb
from `workers.catalog`. The job id is derived from the request id, and the enqueue is added to the same
MULTI as the approval, so one approval makes at most one job.

The queue is not a remote shell. RQ imports and calls whatever function a job hash names, and its
default serializer is pickle, so anyone able to write to Redis could run code in a worker (which may
change Secrets and Deployments) or in serve (which runs abandoned jobs' failure callbacks). Here:
- every job is JSON (`SERIALIZER`), written and read so everywhere (queue, worker, registries, fetch):
  a pickle is never loaded, not even a job's `meta` or result;
- `PlateJob` imports only plate-bot's entry points and failure callbacks, drops webhooks, and
  `refusal()` is what a worker checks before it forks for a job (workers/runner.py).
"""

from __future__ import annotations

import contextlib
import logging
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import redis
from redis.client import Pipeline
from rq import Queue, Worker, get_current_job
from rq.callbacks import Callback
from rq.exceptions import DeserializationError, DuplicateJobError, InvalidJobOperation, NoSuchJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException, TimerDeathPenalty
from rq.worker import WorkerStatus

from core.errors import Unavailable
from core.metrics import ClusterState
from core.requests import Request

if TYPE_CHECKING:
    from core.store.home import HomeStore

__all__ = [
    "ENTRY",
    "ENTRY_KWARGS",
    "ENTRY_POINTS",
    "FAILURE_CALLBACKS",
    "ON_FAILURE",
    "PLAN_TIMEOUT",
    "QUEUE_NAME",
    "REPORT_TIMEOUT",
    "RESULT_TTL",
    "SERIALIZER",
    "JobKind",
    "JobTimeout",
    "Pipeline",
    "PlateJob",
    "Queue",
    "RefusedJob",
    "cancel_queued",
    "enqueue",
    "enqueue_lost_report",
    "enqueue_plan",
    "fetch_job",
    "job_connection",
    "job_kind",
    "queue_for",
    "refusal",
    "sweep_abandoned",
    "worker_options",
]

QUEUE_NAME = "plate"


class JobKind(StrEnum):
    RUN = "run"  # the request's own procedure (its verb)
    PLAN = "plan"  # its pre-approval job: the deploy's plan, the rollback's target check
    REPORT_LOST = "report"  # the helm status of a job whose worker was lost, for a worker to add


# What a worker runs for each kind. A job hash names its function by dotted path (that is how RQ stores
# it, whoever writes it), so the table holds paths; tests/unit/test_queue_refusal.py checks that each
# resolves to the function it names, so the table cannot drift from the code.
ENTRY: dict[JobKind, str] = {
    JobKind.RUN: "workers.jobs.run",
    JobKind.PLAN: "workers.jobs.plan",
    JobKind.REPORT_LOST: "workers.jobs.report_lost",
}
PLAN_TIMEOUT = 600
REPORT_TIMEOUT = 120
# Cluster-free (serve runs it when it sweeps an abandoned job); `workers.jobs.on_failure` is the name
# jobs enqueued before 0.2 carry, an alias of the same function.
ON_FAILURE = "workers.lost.on_failure"
RESULT_TTL = 7 * 86400

SERIALIZER = JSONSerializer
# Every function a plate-bot job may name, and every failure callback it may carry. Nothing else is
# imported from a job hash, whoever wrote it.
ENTRY_POINTS = frozenset(ENTRY.values())
FAILURE_CALLBACKS = frozenset({ON_FAILURE, "workers.jobs.on_failure"})
# What the entry points take: keyword arguments only, all strings.
ENTRY_KWARGS = frozenset({"request", "procedure", "lost_job"})

security = logging.getLogger("plate.security")
log = logging.getLogger("plate.queue")


class RefusedJob(Exception):
    """A job hash that names something other than plate-bot's own code."""


class PlateJob(Job):
    """RQ's Job, restricted to plate-bot's own code: its function must be an entry point, a failure
    callback other than plate-bot's is never imported (the job fails without it), success/stopped
    callbacks and webhooks (RQ posts to any URL they name) are dropped."""

    refused_extras: tuple[str, ...] = ()

    def restore(self, raw_data: Any) -> Any:
        result = super().restore(raw_data)
        extras = []
        if self.webhooks:
            extras.append("webhooks")
            self.webhooks = []
        for kind in ("success", "stopped"):
            if getattr(self, f"_{kind}_callback_name", None):
                extras.append(f"{kind} callback `{getattr(self, f'_{kind}_callback_name')}`")
                setattr(self, f"_{kind}_callback_name", None)
                setattr(self, f"_{kind}_callback", None)
        if self._failure_callback_name and self._failure_callback_name not in FAILURE_CALLBACKS:
            extras.append(f"failure callback `{self._failure_callback_name}`")
            self._failure_callback_name = None
            self._failure_callback = None  # type: ignore[assignment]  # RQ's own "no callback" value
        self.refused_extras = tuple(extras)
        if extras:
            security.warning(
                "job carries what plate-bot never writes; ignored", extra={"job": self.id, "ignored": extras}
            )
        return result

    @property
    def func(self) -> Any:
        name = self.func_name
        if name not in ENTRY_POINTS or self.instance is not None:
            raise RefusedJob(f"`{_shown(name)}` is not a plate-bot entry point")
        return super().func


def _shown(value: Any, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def refusal(job: Job) -> str | None:
    """Why a worker must not run `job`, or None. Reading the payload never runs code (JSON only)."""
    try:
        name, instance, args, kwargs = job.func_name, job.instance, job.args, job.kwargs
    except DeserializationError:
        return (
            "its payload is not a plate-bot job (not JSON: a pickled job queued by plate-bot before 0.2, "
            "or something else); nothing was run"
        )
    if name not in ENTRY_POINTS:
        return f"`{_shown(name)}` is not a plate-bot entry point; nothing was run"
    if instance is not None or args:
        return "plate-bot entry points take keyword arguments only; nothing was run"
    strings = isinstance(kwargs, dict) and all(isinstance(v, str) for v in kwargs.values())
    if not strings or set(kwargs) - ENTRY_KWARGS:
        return "its arguments are not a plate-bot request; nothing was run"
    extras = getattr(job, "refused_extras", ())
    if extras:
        return f"it carries {', '.join(extras)}, which plate-bot never sets; nothing was run"
    return None


def queue_for(connection: redis.Redis) -> Queue:
    return Queue(QUEUE_NAME, connection=connection, serializer=SERIALIZER, job_class=PlateJob)


def worker_options() -> dict[str, Any]:
    """What every RQ worker on plate-bot's queue needs (tests and the demo run RQ's own Worker)."""
    return {"serializer": SERIALIZER, "job_class": PlateJob}


def fetch_job(job_id: str, connection: redis.Redis) -> PlateJob:
    job = PlateJob.fetch(job_id, connection=connection, serializer=SERIALIZER)
    assert isinstance(job, PlateJob)  # Job.fetch builds the class it is called on
    return job


def _enqueue(
    queue: Queue,
    request: Request,
    *,
    kind: JobKind,
    job_id: str,
    timeout: int,
    pipe: Pipeline | None = None,
    unique: bool = False,
    on_failure: bool = True,
    extra: dict[str, str] | None = None,
) -> None:
    queue.enqueue_call(
        ENTRY[kind],
        kwargs={"request": request.for_storage(), **(extra or {})},
        timeout=timeout,
        result_ttl=RESULT_TTL,
        failure_ttl=RESULT_TTL,
        job_id=job_id,
        description=f"{request.verb if kind is JobKind.RUN else kind.value} {request.env} ({request.id})",
        # `verb` for readers before 0.2; `kind` is what a job is.
        meta={"request": request.id, "env": request.env, "kind": kind.value, "verb": _meta_verb(request, kind)},
        on_failure=Callback(ON_FAILURE) if on_failure else None,
        pipeline=pipe,
        unique=unique,
    )


def _meta_verb(request: Request, kind: JobKind) -> str:
    return {JobKind.RUN: request.verb, JobKind.PLAN: "plan", JobKind.REPORT_LOST: "report"}[kind]


def job_kind(job: Job) -> JobKind | None:
    """A job's kind from its meta (jobs queued before 0.2 carry only `verb`)."""
    meta = job.meta or {}
    with contextlib.suppress(ValueError):
        return JobKind(meta.get("kind") or {"plan": "plan", "report": "report"}.get(str(meta.get("verb")), "run"))
    return None


def enqueue(queue: Queue, pipe: Pipeline, request: Request, job_timeout: int) -> None:
    """Add the job for `request` to the caller's transaction (RQ ignores `unique` inside a pipeline,
    so at-most-once comes from the transaction that approved the request)."""
    _enqueue(queue, request, kind=JobKind.RUN, job_id=request.job_id, timeout=job_timeout, pipe=pipe)


def enqueue_plan(queue: Queue, request: Request) -> None:
    """The read-only pre-approval job of a request (no lock: it changes nothing)."""
    job_id = f"{request.job_id}-plan"
    try:
        _enqueue(queue, request, kind=JobKind.PLAN, job_id=job_id, timeout=PLAN_TIMEOUT, unique=True)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise Unavailable("plate-bot cannot reach Redis right now; the plan was not started.") from exc


def enqueue_lost_report(connection: redis.Redis, request: Request, lost_job: str) -> None:
    """The cluster half of a lost-job report (the release's helm status), for a worker to run: the
    process that noticed the loss (serve's housekeeper) has no cluster access. At most one per job."""
    with contextlib.suppress(DuplicateJobError):
        _enqueue(
            queue_for(connection),
            request,
            kind=JobKind.REPORT_LOST,
            job_id=f"{lost_job}-lost",
            timeout=REPORT_TIMEOUT,
            unique=True,
            on_failure=False,
            extra={"lost_job": lost_job},
        )


JobTimeout = JobTimeoutException
"""What a job sees when RQ's hard time limit strikes (raised inside the job's own code)."""


def job_connection() -> redis.Redis | None:
    """The Redis connection of the job running in this process, if one is."""
    job = get_current_job()
    return job.connection if job is not None else None


def scale_hint(queue: Queue) -> dict[str, int]:
    """What the worker autoscaler reads (serve's /scale, KEDA's metrics-api trigger): jobs waiting plus jobs
    running. A running job occupies its worker, so a plan queued behind a 20-minute deploy needs a second
    worker even though the queue holds one job."""
    queued, running = queue.count, StartedJobRegistry(queue=queue, job_class=queue.job_class).count
    return {"queued": queued, "running": running, "wanted": queued + running}


def cluster_state(queue: Queue, store: HomeStore) -> ClusterState:
    """What /metrics and the worker autoscaler read: the queue, RQ's started registry (running jobs), the
    workers and whether they are busy, plus the store's pending approvals and held locks."""
    registry = StartedJobRegistry(queue=queue, job_class=queue.job_class)
    workers = Worker.all(queue=queue)
    pending, locks = store.approvals_and_locks()
    return ClusterState(
        stats=store.stats(),
        queued=queue.count,
        running=registry.count,
        workers=len(workers),
        busy=sum(1 for w in workers if w.get_state() == WorkerStatus.BUSY),
        pending=pending,
        locks=locks,
    )


def sweep_abandoned(queue: Queue) -> list[str]:
    """Report jobs whose worker is gone: serve's housekeeper calls this every few seconds instead of
    waiting for RQ's 10-minute maintenance. Returns the ids of jobs abandoned early (see below).

    RQ's `cleanup()` moves jobs whose heartbeat lapsed to the failed registry and runs their failure
    callback here (workers.lost: lock, thread, no cluster access; the helm status follows from a worker).
    JSON jobs and plate's Job class: nothing read here is unpickled or imports code a job names. RQ's
    default SIGALRM time limit on that callback only works in a main thread: a timer instead.

    A worker cold-shut-down past its grace period (second SIGTERM) kills its work-horse and deregisters,
    but the job stays STARTED with a registry score 60-90 s ahead: its execution is re-scored as expired
    so that the same `cleanup()` handles it now (found with RQ's public registry API, not by parsing
    its entries). A SIGKILLed worker stays registered
    until its key expires, so that case keeps RQ's own timing.
    """
    registry = StartedJobRegistry(queue=queue, job_class=queue.job_class, death_penalty_class=TimerDeathPenalty)
    running = registry.get_job_and_execution_ids(cleanup=False)
    orphans: list[str] = []
    if running:
        live = {w.name for w in Worker.all(queue=queue)}
        jobs = queue.job_class.fetch_many([j for j, _ in running], queue.connection, serializer=queue.serializer)
        with queue.connection.pipeline() as pipe:
            for (job_id, execution_id), job in zip(running, jobs, strict=True):
                if job is None or job.get_status(refresh=False) != JobStatus.STARTED:
                    continue
                if job.worker_name and job.worker_name not in live:
                    # Expired now: the registry scores executions by expiry (add_execution cannot set a
                    # past score: a negative ttl means "never"), so the entry is re-scored to 0.
                    execution = Execution(execution_id, job_id, connection=queue.connection)
                    pipe.zadd(registry.key, {execution.composite_key: 0}, xx=True)
                    orphans.append(job_id)
            pipe.execute()
    if orphans:
        log.warning("jobs of workers that shut down", extra={"jobs": orphans})
    registry.cleanup()
    return orphans


def cancel_queued(job_id: str, connection: redis.Redis) -> bool:
    """Cancel a job that is still waiting in the queue, so it never runs; False when it is not waiting
    (a worker took it, it ended, or it never existed). Taking it off the queue's list is the atomic
    step: a worker that dequeued it first keeps it (`plate-bot admin break-lock`)."""
    queue = queue_for(connection)
    try:
        if not connection.lrem(queue.key, 0, job_id):
            return False
        # Off the queue it cannot run; its hash (if any) is marked canceled for RQ's registries and readers.
        with contextlib.suppress(NoSuchJobError, InvalidJobOperation, DeserializationError):
            fetch_job(job_id, connection).cancel()
    except redis.RedisError as exc:
        raise Unavailable("plate-bot cannot reach Redis right now.") from exc
    return True
