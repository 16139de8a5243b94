"""RQ entry points. `run` executes the procedure a request names; `on_failure` covers what `run` could
not report itself: RQ's hard timeout and workers that died mid-job (abandoned-job cleanup).

Every outcome releases the environment lock and leaves an `outcome` on the job's Redis state, so a
job is reported exactly once whichever path ends it.
"""

from __future__ import annotations

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
from bot.logs import bind
from bot.metrics import METRICS
from bot.slack import SlackGateway
from bot.store import Store
from config.environments import PlateConfig, load_config
from config.settings import Settings
from workers import deploy as _deploy  # noqa: F401  - importing registers the procedures
from workers import status as _status  # noqa: F401
from workers.errors import StepFailed
from workers.procedures import PROCEDURES, JobContext
from workers.progress import Progress
from workers.reporting import ThreadReporter

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


def plan(request: str) -> str:
    """Before approval: the deploy's plan (chart checks, diff, digest) onto the card."""
    return run(request, procedure="plan")


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
        job_key = req.job_id if procedure is None else f"{req.job_id}-{procedure}"
        title = f"{proc.title} {env.name}{dry}"
        reporter = ThreadReporter(slack, store, req, Progress.plan(title, proc.steps), job_key=job_key)
        ctx = JobContext(req, env, config, settings, store, slack, reporter)
        return _execute(ctx, proc.body, mutating=proc.mutating and not req.args.get("dry_run"))


def _execute(ctx: JobContext, body: Any, *, mutating: bool) -> str:
    req, env, store, reporter = ctx.request, ctx.env, ctx.store, ctx.report
    started = time.monotonic()
    if mutating:
        store.refresh_lock(env.name, req.id, env.job_timeout + 60, "running")
    store.save_job_state(reporter.job_key, started=str(time.time()))
    reporter.open()
    outcome = "failed"
    log.info("job started", extra={"verb": req.verb})
    try:
        summary = body(ctx)
        reporter.finish(ok=True, summary=summary)
        outcome = "succeeded"
        return f"succeeded: {summary}"
    except StepFailed as exc:
        reporter.finish(ok=False, summary=exc.message)
        if exc.details:
            reporter.reply("\n".join(exc.details))
        return f"failed: {exc.message}"
    except JobTimeoutException:
        reporter.finish(ok=False, summary=f"stopped: the job ran past its {env.job_timeout}s limit")
        outcome = "timeout"
        raise
    except Exception:
        error_id = uuid.uuid4().hex[:8]
        log.exception("job crashed", extra={"error_id": error_id})
        reporter.finish(ok=False, summary=messages.job_crashed(error_id))
        outcome = "crashed"
        return f"crashed: {error_id}"
    finally:
        if mutating:
            store.release_lock(env.name, req.id)
        store.save_job_state(reporter.job_key, outcome=outcome, ended=str(time.time()))
        METRICS.job(req.verb, outcome, time.monotonic() - started)
        log.info("job ended", extra={"outcome": outcome})


def on_failure(job: Job, connection: redis.Redis, exc_type: type, value: BaseException, _tb: Any) -> None:
    """RQ failure callback: runs in the worker after a hard timeout, or in whichever process cleaned up
    an abandoned job (a worker that was SIGKILLed). Reports once and frees the environment."""
    raw = (job.kwargs or {}).get("request")
    if not raw:
        return
    req = Request.from_storage(raw)
    store = Store(connection)
    store.release_lock(req.env, req.id)
    if store.job_state(job.id).get("outcome"):
        return  # `run` already reported this job
    store.save_job_state(job.id, outcome="lost")
    settings = Settings()
    slack = SlackGateway.from_settings(settings)
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
        slack.post(req.channel, messages.job_lost(req.job_id, detail), thread_ts=req.message_ts)
        state = store.job_state(job.id)
        if state.get("status_ts"):
            lost = Progress(state.get("title", req.verb), ()).finish(time.time(), ok=False, summary="worker lost")
            text, blocks = messages.progress_message(lost, time.time())
            slack.update(req.channel, state["status_ts"], text, blocks)
    METRICS.job(req.verb, "lost", 0.0)
