"""Jobs nobody saw end, and jobs a worker refused: reported without cluster access.

`on_failure` is RQ's failure callback of every plate-bot job. It runs after a hard timeout (in the
work-horse), for a work-horse killed while its worker lives (in the worker), and for an abandoned job
(a worker that died) in whichever process swept RQ's started-job registry: usually serve's
Housekeeper, which has no kubeconfig and no helm. So it only uses Redis and Slack: it frees the lock,
records the outcome once, tells the thread at once, and queues `workers.jobs.report_lost` so a worker
adds the release's current helm status to the thread.

`report_refused` tells the thread of a job the worker refused to run (core.queue.refusal): a pickled job
queued by plate-bot before 0.2 is the expected case during an upgrade; anything else is logged as a
security event by the worker.

Nothing here imports the kubernetes client or helm: serve imports this module.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from functools import lru_cache
from typing import Any

from config.environments import PlateConfig, load_config
from config.settings import Settings
from core import messages
from core.audit import Auditor, Event
from core.logs import bind
from core.progress import Progress
from core.queue import JobKind, enqueue_lost_report, job_kind
from core.requests import Request
from core.slack import SlackGateway
from core.store import Store
from workers import bookkeeping

log = logging.getLogger("plate.worker")
_JOB_ID = re.compile(r"^plate-(?P<request>[A-Za-z0-9_.:-]+?)(?P<plan>-plan)?$")


@lru_cache(maxsize=4)
def _config(path: str) -> PlateConfig:
    return load_config(path)


def request_of(job: Any, store: Store) -> Request | None:
    """The request a job belongs to: from its arguments, or (a job whose payload cannot be read, such
    as a pickled one from an older version) from its id and the stored request."""
    with contextlib.suppress(Exception):
        raw = (job.kwargs or {}).get("request")
        if raw:
            return Request.from_storage(raw)
    return request_for_job_id(job.id, store)


def request_for_job_id(job_id: str, store: Store) -> Request | None:
    match = _JOB_ID.match(job_id)
    if not match:
        return None
    try:
        request = store.get(match["request"])
    except Exception:
        return None
    return request if request is not None and request.job_id == f"plate-{match['request']}" else None


def on_failure(job: Any, connection: Any, exc_type: type, value: BaseException, _tb: Any) -> None:
    """RQ failure callback: runs in the worker after a hard timeout, or in whichever process cleaned up
    an abandoned job (a worker that was SIGKILLed). Reports once and frees the environment."""
    store = Store(connection)
    req = request_of(job, store)
    if req is None:
        return
    released = bool(req.lock_name) and store.release_lock(str(req.lock_name), req.id)
    state = store.job_state(job.id)
    if state.get("outcome"):
        return  # `run` already reported this job
    store.save_job_state(job.id, outcome="lost")
    settings = Settings()
    slack = SlackGateway.from_settings(settings)
    _audit_lost(store, slack, settings, req, job.id, released, exc_type)
    with bind(request_id=req.id, job_id=req.job_id, env=req.where):
        log.warning("job lost", extra={"reason": getattr(exc_type, "__name__", str(exc_type))})
        # Metrics, the operation line and Home first: the thread's message is the last word.
        started = float(store.job_state(job.id).get("started") or time.time())
        config = None
        with contextlib.suppress(Exception):
            config = _config(str(settings.plate_config))
        kind = job_kind(job)
        kind_name = req.verb if kind in (JobKind.RUN, None) else kind.value
        bookkeeping.job_ended(
            store,
            slack,
            config,
            req,
            kind=kind_name,
            outcome="lost",
            summary="worker lost",
            seconds=time.time() - started,
        )
        slack.post(req.channel, messages.job_lost(req.job_id, messages.LOST_STATUS_FOLLOWS), thread_ts=req.message_ts)
        state = store.job_state(job.id)
        if state.get("status_ts"):
            lost = Progress(state.get("title", req.verb), ()).finish(time.time(), ok=False, summary="worker lost")
            text, blocks = messages.progress_message(lost, time.time())
            slack.update(req.channel, state["status_ts"], text, blocks)
        try:
            enqueue_lost_report(connection, req, job.id)
        except Exception:
            log.exception("could not queue the helm status of the lost job")


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
            # A change's record is kept under its release's name, which is the lock its job held.
            store.save_change(req.lock_name or req.env, {**change, "outcome": "lost", "ended": time.time()})
    except Exception:
        log.exception("could not mark the record of this change lost")


def report_refused(connection: Any, job_id: str, reason: str, *, unreadable: bool) -> bool:
    """Tell the thread of the request `job_id` belongs to (if any) that its job was refused, free the
    lock its approval took, record the outcome once. Returns whether a request was found."""
    store = Store(connection)
    req = request_for_job_id(job_id, store)
    if req is None:
        return False
    released = bool(req.lock_name) and store.release_lock(str(req.lock_name), req.id)
    if store.job_state(job_id).get("outcome"):
        return True
    store.save_job_state(job_id, outcome="refused", ended=str(time.time()))
    settings = Settings()
    slack = SlackGateway.from_settings(settings)
    try:
        channel = _config(str(settings.plate_config)).audit_channel
    except Exception:
        channel = None
    auditor = Auditor(store, slack, channel)
    auditor.record(Event.JOB_ENDED, request=req, job=job_id, outcome="refused", detail=reason)
    if released:
        auditor.record(Event.LOCK_RELEASED, request=req, job=job_id, detail="the job was refused")
    text = messages.job_refused_legacy(job_id) if unreadable else messages.job_refused(job_id, reason)
    slack.post(req.channel, text, thread_ts=req.message_ts)
    return True
