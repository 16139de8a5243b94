"""What a job leaves behind for metrics and App Home when it ends.

Jobs run in a work-horse that RQ forks per job, so nothing here may live only in process memory: the
outcome and duration go to the Redis stats hash (read by every process's /metrics), the operation to the
environment's "last operations", the release state to its Home record; then the Home tabs of recent
viewers are re-published. None of it may fail a job: errors are logged and swallowed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from config.environments import PlateConfig
from core.home import HomeTab, operation_entry, release_record
from core.metrics import METRICS, job_increments
from core.requests import Request, target_of
from core.slack import SlackGateway
from core.store import Store

log = logging.getLogger("plate.worker")


def record_release(store: Store, env: str, status: Mapping[str, Any] | None) -> None:
    """Keep what `helm status` just said about `env`'s release for App Home (a job that read it calls this)."""
    try:
        store.save_release(env, release_record(status, previous=store.release(env), now=time.time()))
    except Exception:
        log.warning("could not record the release state", exc_info=True)


def _app_of(config: PlateConfig | None, request: Request) -> str | None:
    """The app a job was about, for the per-app metrics (a one-app environment's requests name none)."""
    if request.app:
        return request.app
    view = target_of(config, request) if config is not None else None
    return view.app or None if view is not None else None


def job_ended(
    store: Store,
    slack: SlackGateway,
    config: PlateConfig | None,
    request: Request,
    *,
    kind: str,
    outcome: str,
    summary: str,
    seconds: float,
    slack_before: Mapping[str, float] | None = None,
) -> None:
    """Stats, the operation line (for the request's own job, not its plan) and a Home refresh."""
    now = METRICS.slack_counts()
    delta = {k: v - (slack_before or {}).get(k, 0.0) for k, v in now.items()} if slack_before is not None else {}
    app = _app_of(config, request)
    try:
        store.record_stats(job_increments(kind, outcome, seconds, delta, (request.env, app) if app else None))
        if outcome == "succeeded" and app:  # "when did prod's web last deploy": a time, not a count
            store.record_latest({f"last_success|{request.env}|{app}|{kind}": time.time()})
    except Exception:
        log.warning("could not record the job's metrics", exc_info=True)
    if kind == request.verb:
        try:
            link = slack.permalink(request.channel, request.message_ts) if request.message_ts else None
            entry = operation_entry(request, outcome=outcome, summary=summary, ended_at=time.time(), link=link)
            store.record_operation(request.env, entry)
        except Exception:
            log.warning("could not record the operation", exc_info=True)
    if config is not None:
        try:
            HomeTab(lambda: config, store, slack).refresh()
        except Exception:
            log.warning("could not refresh App Home", exc_info=True)
