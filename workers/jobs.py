"""RQ entry points. `run` executes the procedure a request names; `on_failure` covers what `run` could
not report itself: RQ's hard timeout and workers that died mid-job (abandoned-job cleanup).

Every outcome releases the environment lock and leaves an `outcome` on the job's Redis state, so a
job is reported exactly once whichever path ends it.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from functools import lru_cache
from typing import Any

import redis
from rq import get_current_job
from rq.job import Job
from rq.timeouts import JobTimeoutException

from bot import messages
from bot.approvals import Request
from bot.audit import Event
from bot.auditor import Auditor
from bot.logs import bind
from bot.metrics import METRICS
from bot.slack import SlackGateway
from bot.store import Store
from config.environments import PlateConfig, load_config
from config.settings import Settings
from workers import deploy as _deploy  # noqa: F401  - importing registers the procedures
from workers import diagnose as _diagnose  # noqa: F401
from workers import harbor as _harbor  # noqa: F401
from workers import history as _history  # noqa: F401
from workers import observe
from workers import rollback as _rollback  # noqa: F401
from workers import status as _status  # noqa: F401
from workers.errors import StepFailed
from workers.procedures import PROCEDURES, JobContext
from workers.progress import Progress
from workers.reporting import ThreadReporter
from workers.revisions import change_record

log = logging.getLogger("plate.worker")


@lru_cache(maxsize=4)
def _config(path: str) -> PlateConfig:
    return load_config(path)


def _connection() -> redis.Redis:
    job = get_current_job()
    if job is not None:
        return job.connection
    from bot.redisconn import connect

    return connect(Settings())


# The pre-approval job of each verb that has one (bot.queue.enqueue_plan queues `<job id>-plan`).
PLAN_PROCEDURES = {"deploy": "plan", "rollback": "rollback-plan"}


def plan(request: str) -> str:
    """Before approval: the deploy's plan (chart checks, diff, digest) or the rollback's target check,
    onto the card."""
    return run(request, procedure=PLAN_PROCEDURES.get(Request.from_storage(request).verb, "plan"))


def run(request: str, procedure: str | None = None) -> str:
    """Run the procedure of `request` (a stored Request) and report it in the request's thread."""
    req = Request.from_storage(request)
    settings = Settings()
    config = _config(str(settings.plate_config))
    store = Store(_connection())
    slack = SlackGateway.from_settings(settings)
    env = config.environments.get(req.env)
    proc = PROCEDURES.get(procedure or req.verb)
    with bind(request_id=req.id, job_id=req.job_id, env=req.env, user=req.requester):
        if env is None or proc is None:
            what = f"environment `{req.env}`" if env is None else f"procedure for `{req.verb}`"
            slack.post(req.channel, f":x: This worker has no {what}; nothing was run.", thread_ts=req.message_ts)
            store.save_job_state(req.job_id, outcome="failed")
            if env is not None:
                store.release_lock(env.name, req.id)
            return "failed: not configured"
        dry = " (dry run)" if req.args.get("dry_run") else ""
        # A pre-approval job keeps its state under its RQ job id, so on_failure finds it.
        job_key = req.job_id if procedure is None else f"{req.job_id}-plan"
        title = f"{proc.title} {env.name}{dry}"
        reporter = ThreadReporter(slack, store, req, Progress.plan(title, proc.steps), job_key=job_key)
        ctx = JobContext(req, env, config, settings, store, slack, reporter)
        return _execute(ctx, proc.body, mutating=proc.mutating and not req.args.get("dry_run"))


def _execute(ctx: JobContext, body: Any, *, mutating: bool) -> str:
    req, env, store, reporter = ctx.request, ctx.env, ctx.store, ctx.report
    started = time.monotonic()
    slack_before = METRICS.slack_counts()  # this work-horse's Slack trouble is the difference at the end
    result = "failed"
    if mutating:
        store.refresh_lock(env.name, req.id, env.job_timeout + 60, "running")
    wall_started = time.time()
    store.save_job_state(reporter.job_key, started=str(wall_started))
    ctx.audit.record(Event.JOB_STARTED, request=req, job=reporter.job_key, detail=reporter.progress.title)
    if mutating:
        _save_change(ctx, "running", wall_started, deadline=wall_started + env.job_timeout)
    reporter.open()
    outcome = "failed"
    log.info("job started", extra={"verb": req.verb})
    try:
        summary = result = body(ctx)
        reporter.finish(ok=True, summary=summary)
        outcome = "succeeded"
        return f"succeeded: {summary}"
    except StepFailed as exc:
        result = exc.message
        reporter.finish(ok=False, summary=exc.message)
        if exc.details:
            reporter.reply("\n".join(exc.details))
        return f"failed: {exc.message}"
    except JobTimeoutException:
        result = f"stopped: the job ran past its {env.job_timeout}s limit"
        reporter.finish(ok=False, summary=result)
        outcome = "timeout"
        raise
    except Exception:
        error_id = uuid.uuid4().hex[:8]
        log.exception("job crashed", extra={"error_id": error_id})
        reporter.finish(ok=False, summary=messages.job_crashed(error_id))
        outcome, result = "crashed", f"internal error `{error_id}`"
        return f"crashed: {error_id}"
    finally:
        released = mutating and store.release_lock(env.name, req.id)
        store.save_job_state(reporter.job_key, outcome=outcome, ended=str(time.time()))
        log.info("job ended", extra={"outcome": outcome})
        if mutating:
            _save_change(ctx, outcome, wall_started, ended=time.time())
        took = f"{time.monotonic() - started:.1f}"
        ctx.audit.record(Event.JOB_ENDED, request=req, job=reporter.job_key, outcome=outcome, seconds=took)
        if released:
            ctx.audit.record(Event.LOCK_RELEASED, request=req, job=reporter.job_key, detail="the job ended")
        kind = reporter.job_key.removeprefix(req.job_id).lstrip("-") or req.verb  # "plan" for a plan job
        observe.job_ended(
            store,
            ctx.slack,
            ctx.config,
            req,
            kind=kind,
            outcome=outcome,
            summary=str(result),
            seconds=time.monotonic() - started,
            slack_before=slack_before,
        )


def _save_change(ctx: JobContext, outcome: str, started: float, **times: float) -> None:
    """plate-bot's record of a mutating job, which `/plate history` joins with helm's history."""
    try:
        record = change_record(ctx.request, job=ctx.report.job_key, outcome=outcome, started=started, **times)
        ctx.store.save_change(ctx.env.name, record)
    except Exception:
        log.exception("could not save the record of this change")


def on_failure(job: Job, connection: redis.Redis, exc_type: type, value: BaseException, _tb: Any) -> None:
    """RQ failure callback: runs in the worker after a hard timeout, or in whichever process cleaned up
    an abandoned job (a worker that was SIGKILLed). Reports once and frees the environment."""
    raw = (job.kwargs or {}).get("request")
    if not raw:
        return
    req = Request.from_storage(raw)
    store = Store(connection)
    released = store.release_lock(req.env, req.id)
    state = store.job_state(job.id)
    if state.get("outcome"):
        return  # `run` already reported this job
    store.save_job_state(job.id, outcome="lost")
    settings = Settings()
    slack = SlackGateway.from_settings(settings)
    _audit_lost(store, slack, settings, req, job.id, released, exc_type)
    detail = ""
    try:
        config = _config(str(settings.plate_config))
        env = config.environments[req.env]
        from workers.helm import Helm

        release = Helm(settings.helm_bin, namespace=env.namespace, kube_context=env.kube_context).status(env.release)
        from workers.summary import helm_line

        detail = "Now: " + helm_line(release)
    except Exception:
        detail = "The current helm status could not be read."
    with bind(request_id=req.id, job_id=req.job_id, env=req.env):
        log.warning("job lost", extra={"reason": getattr(exc_type, "__name__", str(exc_type))})
        # Metrics, the operation line and Home first: the thread's message is the last word.
        started = float(store.job_state(job.id).get("started") or time.time())
        config = None
        with contextlib.suppress(Exception):
            config = _config(str(settings.plate_config))
        kind = job.id.removeprefix(req.job_id).lstrip("-") or req.verb
        observe.job_ended(
            store, slack, config, req, kind=kind, outcome="lost", summary="worker lost", seconds=time.time() - started
        )
        slack.post(req.channel, messages.job_lost(req.job_id, detail), thread_ts=req.message_ts)
        state = store.job_state(job.id)
        if state.get("status_ts"):
            lost = Progress(state.get("title", req.verb), ()).finish(time.time(), ok=False, summary="worker lost")
            text, blocks = messages.progress_message(lost, time.time())
            slack.update(req.channel, state["status_ts"], text, blocks)


def _audit_lost(
    store: Store,
    slack: SlackGateway,
    settings: Settings,
    req: Request,
    job_id: str,
    released: bool,
    exc_type: type,
) -> None:
    """The audit records of a job nobody saw end, and its change record's outcome."""
    try:
        channel = _config(str(settings.plate_config)).audit_channel
    except Exception:
        channel = None
    auditor = Auditor(store, slack, channel)
    reason = getattr(exc_type, "__name__", str(exc_type))
    auditor.record(Event.JOB_LOST, request=req, job=job_id, outcome="lost", detail=reason)
    if released:
        auditor.record(Event.LOCK_RELEASED, request=req, job=job_id, detail="the job's worker was lost")
    try:
        change = store.change(req.id) if job_id == req.job_id else None
        if change is not None:
            store.save_change(req.env, {**change, "outcome": "lost", "ended": time.time()})
    except Exception:
        log.exception("could not mark the record of this change lost")
