"""PURE. Every user-facing string and Block Kit payload plate-bot sends.

Builders return `(text, blocks)`: `text` is the notification/fallback, `blocks` the rich layout, made
of `core.blocks`' pieces.
Buttons carry only the request id; the server re-checks everything on click.
"""

from __future__ import annotations

import time
from typing import Any

from config.durations import format_duration
from config.environments import Environment
from core.blocks import Blocks, actions, button, context, section
from core.progress import Outcome, Progress, StepState
from core.requests import PAUSE_AUTOSYNC, Request, Status

APPROVE, REJECT, CANCEL = "plate_approve", "plate_reject", "plate_cancel"
# The incident thread's button; its value is `env` or `env/app`. It opens `/plate rollback <env> <app>` in
# the environment's deploy channel.
REQUEST_ROLLBACK = "plate_request_rollback"
APPROVE_PAUSE = "plate_approve_pause"  # a rollback's "Approve and pause auto-sync"
_CHECKING = {"rollback": ":hourglass_flowing_sand: Checking the target revision against helm history…"}

_STEP_ICON = {
    StepState.PENDING: ":white_circle:",
    StepState.RUNNING: ":hourglass_flowing_sand:",
    StepState.DONE: ":white_check_mark:",
    StepState.FAILED: ":x:",
    StepState.SKIPPED: ":heavy_minus_sign:",
    StepState.WARNED: ":warning:",
}
_OUTCOME = {
    Outcome.QUEUED: "queued",
    Outcome.RUNNING: "running",
    Outcome.SUCCEEDED: "succeeded",
    Outcome.FAILED: "failed",
}


def hhmm(ts: float) -> str:
    return time.strftime("%H:%M UTC", time.gmtime(ts))


def seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 60 else format_duration(round(value))


# --- replies to the person typing ---------------------------------------------------------------------


def usage_reply(problem: str, help_text: str) -> str:
    return f":warning: {problem}\n\n{help_text}"


def apology(error_id: str) -> str:
    return f":boom: Something went wrong on my side; nothing was changed. Reference: `{error_id}`."


def foreign_workspace() -> str:
    return "plate-bot takes commands and clicks only from its own Slack workspace; nothing was done."


def unavailable() -> str:
    return ":hourglass: plate-bot cannot reach its queue right now; nothing was changed. Try again in a minute."


def lock_held(env: str, holder: dict[str, Any]) -> str:
    """`env`: what the request is about (`prod`, `prod/plate-api`); the holder may be the whole environment."""
    app = f" of `{holder['app']}`" if holder.get("app") else ""
    return (
        f":lock: `{env}` is busy: {holder.get('verb', 'a change')}{app} requested by <@{holder.get('user')}> "
        f"is {holder.get('state', 'running')} since {hhmm(float(holder.get('since', 0)))}. "
        "Try again when it has finished."
    )


def queued_reply(request: Request) -> str:
    return f":inbox_tray: `{request.verb} {request.where}` is queued; follow it in the thread."


def rollback_requested(user: str, link: str | None) -> str:
    """The incident thread's note once its Request rollback button made a request."""
    where = f": <{link}|the request>" if link else " in the environment's deploy channel"
    return f":rewind: Rollback requested by <@{user}>{where}."


# --- the request card ----------------------------------------------------------------------------------


def _what(request: Request, env: Environment) -> str:
    rows = [f"*Environment:* `{env.name}`   *Namespace:* `{env.namespace}`"]
    if request.app:
        rows.append(f"*App:* `{request.app}`")
    if env.release:  # a verb about the whole environment of several apps has none
        rows.append(f"*Release:* `{env.release}`   *Chart:* `{env.chart_source.short}`")
    if "image_tag" in request.args:
        rows.append(f"*Image tag:* `{request.args['image_tag']}`")
    if "revision" in request.args:
        rows.append(f"*Target revision:* `{request.args['revision']}`")
    if request.args.get("dry_run"):
        rows.append("*Dry run:* nothing will change")
    if request.origin:
        rows.append(f"*Asked from:* <{request.origin}|the incident thread>")
    return "\n".join(rows)


def _headline(request: Request) -> str:
    dry = " (dry run)" if request.args.get("dry_run") else ""
    return f"*{request.verb} `{request.where}`*{dry} requested by <@{request.requester}>"


def request_card(request: Request, env: Environment) -> tuple[str, Blocks]:
    """The pending card: while planning only Cancel; then the plan with Approve / Reject / Cancel."""
    need = request.approvals_required - len(request.approvals)
    status = f"Needs {need} approval{'s' if need != 1 else ''} from approvers of `{env.label}` (not the requester)"
    if request.approvals:
        status += " · approved so far by " + ", ".join(f"<@{v.user}>" for v in request.approvals)
    status += f" · expires {hhmm(request.expires_at)}"
    blocks: Blocks = [section(_headline(request)), section(_what(request, env))]
    blocks += [section(f":warning: {note}") for note in request.notes]
    if not request.planned:
        checking = _CHECKING.get(request.verb, ":hourglass_flowing_sand: Computing the plan (lint, render, diff)…")
        blocks.append(section(checking))
    elif request.plan_summary:
        blocks.append(section("\n".join(request.plan_summary)))
    blocks.append(context(status))
    buttons = [button("Cancel", CANCEL, request.id)]
    if request.planned:
        approve = [button("Approve", APPROVE, request.id, "primary")]
        if PAUSE_AUTOSYNC in request.offers:
            approve = [
                button("Approve and pause auto-sync", APPROVE_PAUSE, request.id, "primary"),
                button("Approve (auto-sync stays on)", APPROVE, request.id),
            ]
        buttons = [*approve, button("Reject", REJECT, request.id, "danger"), *buttons]
    blocks.append(actions(f"plate:{request.id}", buttons))
    text = f"{request.verb} {request.where} requested by <@{request.requester}>: needs approval"
    return text, blocks


def decided_card(request: Request, env: Environment) -> tuple[str, Blocks]:
    """The card after the decision: buttons gone, who decided and when."""
    at = hhmm(request.decided_at) if request.decided_at else ""
    if request.status is Status.APPROVED and request.needs_approval():
        by = ", ".join(f"<@{v.user}>" for v in request.approvals)
        line = f":white_check_mark: Approved by {by} at {at}; queued as `{request.job_id}`. Progress in the thread."
        if PAUSE_AUTOSYNC in request.chosen:
            line += " Argo CD auto-sync will be paused first."
    elif request.status is Status.APPROVED:
        line = f":arrow_forward: Queued at {at} as `{request.job_id}` (no approval needed). Progress in the thread."
    elif request.status is Status.REJECTED:
        line = f":no_entry: Rejected by <@{request.decided_by}> at {at}. Nothing was run."
    elif request.status is Status.CANCELLED and request.decided_by is None:
        line = f":information_source: Closed at {at}: {request.reason or 'no change'}. Nothing was run."
    elif request.status is Status.CANCELLED:
        line = f":heavy_multiplication_x: Cancelled by <@{request.decided_by}> at {at}. Nothing was run."
    elif request.status is Status.EXPIRED:
        line = f":hourglass: Expired at {at} without approval. Nothing was run."
    else:
        return request_card(request, env)
    blocks = [section(_headline(request)), section(_what(request, env))]
    if request.plan_summary:
        blocks.append(section("\n".join(request.plan_summary)))
    blocks.append(context(line))
    return _decided_text(request), blocks


def _decided_text(request: Request) -> str:
    """The notification says what happened, and never "approved" when nobody approved."""
    what = f"{request.verb} {request.where}"
    if request.status is Status.APPROVED and not request.needs_approval():
        return f"{what} queued by <@{request.requester}>"
    if request.status is Status.APPROVED:
        return f"{what} approved by {', '.join(f'<@{v.user}>' for v in request.approvals)}: queued"
    return f"{what}: {request.status.value}"


def card(request: Request, env: Environment) -> tuple[str, Blocks]:
    """The card as the request stands now: pending (its buttons) or decided. Whoever changes a request
    re-renders its card with this."""
    return decided_card(request, env) if request.status.final else request_card(request, env)


# --- the job's status message in the thread -------------------------------------------------------------


def progress_message(progress: Progress, now: float) -> tuple[str, Blocks]:
    lines = []
    for step in progress.steps:
        took = step.duration(now)
        timing = f" ({seconds(took)})" if took is not None and step.state is not StepState.PENDING else ""
        note = f" — {step.note}" if step.note else ""
        lines.append(f"{_STEP_ICON[step.state]} {step.title}{timing}{note}")
    head = f"*{progress.title}* — {_OUTCOME[progress.outcome]}"
    if progress.started is not None and progress.outcome in (Outcome.SUCCEEDED, Outcome.FAILED):
        head += f" in {seconds((progress.ended or now) - progress.started)}"
    blocks: Blocks = [section(head), section("\n".join(lines))]
    if progress.summary:
        blocks.append(context(progress.summary))
    return f"{progress.title}: {_OUTCOME[progress.outcome]}", blocks


def job_lost(job_id: str, detail: str) -> str:
    return (
        f":skull: The worker running `{job_id}` was lost before it finished. "
        f"The release may be half-changed: check it with `/plate status`. {detail}"
    ).strip()


LOST_STATUS_FOLLOWS = "The release's current helm status follows as soon as a worker is free."


def job_lost_status(line: str | None) -> str:
    """The helm half of a lost-job report, posted by a worker (serve, which notices, has no cluster access)."""
    return f"Now: {line}" if line else "The current helm status could not be read."


def job_refused(job_id: str, reason: str) -> str:
    return f":no_entry: plate-bot refused to run `{job_id}`: {reason}. The environment lock is released."


def job_refused_legacy(job_id: str) -> str:
    return (
        f":warning: `{job_id}` was queued by an older plate-bot in a format this version no longer runs "
        "(pickled jobs could carry code). Nothing was run and the environment lock is released: "
        "please make the request again."
    )


def job_crashed(error_id: str) -> str:
    return f":boom: The job stopped on an internal error. Reference: `{error_id}`. The environment lock is released."
