"""RQ entry points, one per job kind (`core.queue.ENTRY`, which is also the worker's allow-list). `run`
executes the procedure a request names; `plan` is its pre-approval job; `report_lost` adds the helm
status to a lost job's report (`workers.lost.on_failure` covers what `run` could not report itself:
RQ's hard timeout and workers that died mid-job, and may run in serve, which has no cluster access).
The procedure comes from the one table, `workers.catalog`.

Every outcome releases the environment lock and leaves an `outcome` on the job's Redis state, so a
job is reported exactly once whichever path ends it.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from config.settings import Settings
from core import messages
from core.audit import Event
from core.logs import bind
from core.metrics import METRICS
from core.progress import Progress
from core.queue import JobKind, JobTimeout, job_connection
from core.redisconn import Redis
from core.requests import Request, target_of
from core.slack import SlackGateway
from core.store import Store
from workers import bookkeeping, catalog, lost
from workers.describe import helm_line
from workers.errors import StepFailed
from workers.helm import Helm
from workers.procedures import JobContext, Procedure
from workers.reporting import ThreadReporter
from workers.revisions import change_record

log = logging.getLogger("plate.worker")


_config = lost._config


def _connection() -> Redis:
    connection = job_connection()
    if connection is not None:
        return connection
    from core.redisconn import connect

    return connect(Settings())


def plan(request: str) -> str:
    """Before approval: the deploy's plan (chart checks, diff, digest) or the rollback's target check,
    onto the card."""
    req = Request.from_storage(request)
    return _run(req, catalog.for_request(req.verb, plan=True), JobKind.PLAN)


def run(request: str, procedure: str | None = None) -> str:
    """Run the procedure of `request` (a stored Request) and report it in the request's thread. (Plan
    jobs queued before 0.2 name their procedure here.)"""
    req = Request.from_storage(request)
    if procedure is not None:
        return _run(req, catalog.PROCEDURES.get(procedure), JobKind.PLAN)
    return _run(req, catalog.for_request(req.verb, plan=False), JobKind.RUN)


def _run(req: Request, proc: Procedure | None, kind: JobKind) -> str:
    settings = Settings()
    config = _config(str(settings.plate_config))
    store = Store(_connection())
    slack = SlackGateway.from_settings(settings)
    env = target_of(config, req)
    with bind(request_id=req.id, job_id=req.job_id, env=req.where, user=req.requester):
        if env is None or proc is None:
            what = f"environment `{req.where}`" if env is None else f"procedure for `{req.verb}`"
            slack.post(req.channel, f":x: This worker has no {what}; nothing was run.", thread_ts=req.message_ts)
            store.save_job_state(req.job_id, outcome="failed")
            if req.lock_name:
                store.release_lock(req.lock_name, req.id)
            return "failed: not configured"
        dry = " (dry run)" if req.args.get("dry_run") else ""
        # A pre-approval job keeps its state under its RQ job id, so on_failure finds it.
        job_key = req.job_id if kind is JobKind.RUN else f"{req.job_id}-plan"
        title = f"{proc.title} {req.where}{dry}"
        reporter = ThreadReporter(slack, store, req, Progress.checklist(title, proc.steps), job_key=job_key)
        ctx = JobContext(req, env, config, settings, store, slack, reporter)
        mutating = proc.mutating and not req.args.get("dry_run")
        return _execute(ctx, proc.body, kind=req.verb if kind is JobKind.RUN else kind.value, mutating=mutating)


def _execute(ctx: JobContext, body: Any, *, kind: str, mutating: bool) -> str:
    req, env, store, reporter = ctx.request, ctx.env, ctx.store, ctx.report
    started = time.monotonic()
    slack_before = METRICS.slack_counts()  # this work-horse's Slack trouble is the difference at the end
    result = "failed"
    lock = req.lock_name if mutating else None
    if lock:
        store.refresh_lock(lock, req.id, env.job_timeout + 60, "running")
    wall_started = time.time()
    store.save_job_state(reporter.job_key, started=str(wall_started))
    ctx.audit.record(Event.JOB_STARTED, request=req, job=reporter.job_key, detail=reporter.progress.title)
    if mutating:
        _save_change(ctx, "running", wall_started, deadline=wall_started + env.job_timeout)
    reporter.open()
    outcome, returned, shown, details = "failed", "", "", []
    log.info("job started", extra={"verb": req.verb})
    try:
        try:
            result = body(ctx)
            outcome, returned = "succeeded", f"succeeded: {result}"
        except StepFailed as exc:
            result, returned, details = exc.message, f"failed: {exc.message}", list(exc.details or [])
        except JobTimeout:
            outcome, result = "timeout", f"stopped: the job ran past its {env.job_timeout}s limit"
            raise
        except Exception:
            error_id = uuid.uuid4().hex[:8]
            log.exception("job crashed", extra={"error_id": error_id})
            outcome, result, returned = "crashed", f"internal error `{error_id}`", f"crashed: {error_id}"
            shown = messages.job_crashed(error_id)
        finally:
            # The environment is free before the thread says the job ended: whoever reads "succeeded" may
            # ask for the next change at once and must not be told the environment is busy.
            released = bool(lock) and store.release_lock(str(lock), req.id)
            reporter.finish(ok=outcome == "succeeded", summary=shown or str(result))
            if details:
                reporter.reply("\n".join(details))
        return returned
    finally:
        store.save_job_state(reporter.job_key, outcome=outcome, ended=str(time.time()))
        log.info("job ended", extra={"outcome": outcome})
        if mutating:
            _save_change(ctx, outcome, wall_started, ended=time.time())
        took = f"{time.monotonic() - started:.1f}"
        ctx.audit.record(Event.JOB_ENDED, request=req, job=reporter.job_key, outcome=outcome, seconds=took)
        if released:
            ctx.audit.record(Event.LOCK_RELEASED, request=req, job=reporter.job_key, detail="the job ended")
        bookkeeping.job_ended(
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
        ctx.store.save_change(ctx.env.key, record)
    except Exception:
        log.exception("could not save the record of this change")


# Jobs enqueued before 0.2 name `workers.jobs.on_failure`: the same cluster-free callback.
on_failure = lost.on_failure


def report_lost(request: str, lost_job: str) -> str:
    """The cluster half of a lost-job report (queued by `workers.lost.on_failure`, which may run in
    serve): the release's current helm status, as a reply in the request's thread."""
    req = Request.from_storage(request)
    settings = Settings()
    slack = SlackGateway.from_settings(settings)
    line = None
    with bind(request_id=req.id, job_id=lost_job, env=req.env):
        try:
            env = target_of(_config(str(settings.plate_config)), req)
            if env is None:
                raise LookupError(f"{req.where} is no longer configured")
            helm = Helm(settings.helm_bin, namespace=env.namespace, kube_context=env.kube_context,
                        kubeconfig=env.kubeconfig_or(settings.kubeconfig))  # fmt: skip
            release = helm.status(env.release)
            line = helm_line(release)
        except Exception:
            log.warning("could not read the helm status of a lost job", exc_info=True)
        slack.post(req.channel, messages.job_lost_status(line), thread_ts=req.message_ts)
    return "reported" if line else "reported: status unreadable"
