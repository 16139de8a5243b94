"""The audit trail: what happened to which request, who did it, and how it ended.

One record per event: a flat map of short strings, stored as one Redis stream entry, logged as one JSON
line and optionally posted as one Slack line. Records hold ids, names, verbs, arguments and outcomes,
never values, manifests or helm output, so they cannot carry a secret; the one free-text field
(`detail`) is bounded and passes the redaction layer as well.

The records are built by pure functions (`entry`, `for_transition`, `line`); `Auditor` writes them to
the ports it is given (the store's stream, the Slack client), so this module imports no I/O library.
Records are written right after the change they describe has been committed. Auditing never raises: the
change has already happened, so a Redis or Slack hiccup is logged loudly instead of turning a finished
approval or job into an error. No code path edits or deletes a record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Protocol

from core.redact import REDACTOR
from core.requests import Request, Status, Verb
from core.versioned import Versioned

log = logging.getLogger("plate.audit")


class Event(StrEnum):
    REQUEST_CREATED = "request.created"
    REQUEST_REFUSED = "request.refused"  # not allowed, or the environment was locked
    REQUEST_PLANNED = "request.planned"  # the plan (or rollback check) reached the card
    APPROVAL = "request.approval"  # one approver's vote; more are needed
    APPROVED = "request.approved"
    QUEUED = "request.queued"  # no approval needed
    REJECTED = "request.rejected"
    CANCELLED = "request.cancelled"
    CLOSED = "request.closed"  # closed by plate-bot: nothing to do, or an invalid rollback target
    EXPIRED = "request.expired"
    LOCK_TAKEN = "lock.taken"
    LOCK_RELEASED = "lock.released"
    LOCK_BROKEN = "lock.broken"  # freed by an admin with `plate-bot admin break-lock`
    LOCK_BREAK_REFUSED = "lock.break_refused"  # someone not in `admins` tried to
    JOB_STARTED = "job.started"
    JOB_ENDED = "job.ended"
    JOB_LOST = "job.lost"
    AUTOSYNC_PAUSED = "argocd.autosync_paused"


class AuditRecord(Versioned):
    """One audit record as stored (a flat map of short strings in the stream). Versioned: a reader skips
    fields a newer writer added and defaults the ones an older writer never wrote."""

    event: str
    at: str
    request: str | None = None
    env: str | None = None
    app: str | None = None  # the app (Helm release) of an environment with several
    verb: str | None = None
    requester: str | None = None
    user: str | None = None
    job: str | None = None
    outcome: str | None = None
    seconds: str | None = None
    detail: str | None = None

    def fields(self) -> dict[str, str]:
        """The stream entry: strings only, empty fields and the default format left out."""
        data = self.model_dump(exclude_none=True)
        if data.get("format") == 1:
            del data["format"]
        return {k: str(v) for k, v in data.items()}


# Every field a record may have; anything else is a programming error.
FIELDS = tuple(name for name in AuditRecord.model_fields if name != "format")
DETAIL_LIMIT = 300
VALUE_LIMIT = 80


def _clean(value: object, limit: int) -> str:
    text = " ".join(REDACTOR(str(value)).split())  # redacted before anything changes it; one line
    return text if len(text) <= limit else text[: limit - 1] + "…"


def entry(event: Event, *, at: float, request: Request | None = None, **fields: object) -> dict[str, str]:
    """One record. `request` fills request/env/app/verb/requester; `fields` adds or overrides the others."""
    record = {"event": event.value, "at": f"{at:.3f}"}
    if request is not None:
        record.update(request=request.id, env=request.env, verb=request.verb, requester=request.requester)
        if request.app:
            record["app"] = request.app
    for key, value in fields.items():
        if key not in FIELDS:
            raise ValueError(f"{key!r} is not an audit field")
        if value is None or value == "":
            continue
        record[key] = _clean(value, DETAIL_LIMIT if key == "detail" else VALUE_LIMIT)
    return AuditRecord.model_validate(record).fields()


def args_text(args: dict[str, object]) -> str:
    """A request's arguments as `image_tag=1.5.0 dry_run`, for `detail`."""
    return " ".join(key if value is True else f"{key}={value}" for key, value in sorted(args.items()))


def _locks(request: Request) -> bool:
    try:
        verb = Verb(request.verb)
    except ValueError:
        return False
    return verb.mutating and not request.args.get("dry_run")


def for_transition(old: Request, new: Request, *, at: float) -> list[dict[str, str]]:
    """The records one state change of a request makes (none for bookkeeping such as the card's ts).

    An approval that completes the request also records the environment lock taken in the same
    transaction (Store.transition takes it for mutating, non-dry-run requests)."""
    if not new.status.final:
        if len(new.approvals) > len(old.approvals):
            vote = new.approvals[-1]
            votes = f"{len(new.approvals)} of {new.approvals_required}"
            if new.chosen != old.chosen:
                votes += " · chose " + ", ".join(new.chosen)
            return [entry(Event.APPROVAL, at=at, request=new, user=vote.user, detail=votes)]
        if new.planned and not old.planned:
            plan = f"plan {new.plan_digest[:12]}" if new.plan_digest else None
            return [entry(Event.REQUEST_PLANNED, at=at, request=new, detail=plan)]
        return []
    if old.status.final:
        return []
    records: list[dict[str, str]] = []
    if new.status is Status.APPROVED:
        if new.needs_approval():
            voters = ", ".join(v.user for v in new.approvals)
            detail = f"approved by {voters}"
            if new.plan_digest:
                detail += f" · plan {new.plan_digest[:12]}"
            if new.chosen:
                detail += " · chose " + ", ".join(new.chosen)
            records.append(entry(Event.APPROVED, at=at, request=new, user=new.decided_by, detail=detail))
        else:
            records.append(entry(Event.QUEUED, at=at, request=new, detail="no approval needed"))
        if _locks(new):
            records.append(entry(Event.LOCK_TAKEN, at=at, request=new, user=new.requester, job=new.job_id))
        return records
    if new.status is Status.REJECTED:
        return [entry(Event.REJECTED, at=at, request=new, user=new.decided_by, detail=new.reason)]
    if new.status is Status.CANCELLED and new.decided_by is None:
        return [entry(Event.CLOSED, at=at, request=new, user="plate-bot", detail=new.reason)]
    if new.status is Status.CANCELLED:
        return [entry(Event.CANCELLED, at=at, request=new, user=new.decided_by, detail=new.reason)]
    return [entry(Event.EXPIRED, at=at, request=new, detail="no decision before the approval deadline")]


def line(record: dict[str, str]) -> str:
    """One Slack line for the audit channel mirror."""
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(record.get("at", "0"))))
    parts = [f"`{when}` *{record['event']}*"]
    if record.get("verb") or record.get("env"):
        parts.append(f"{record.get('verb', '')} `{record.get('env', '')}`".strip())
    if record.get("user") and record["user"] != "plate-bot":
        parts.append(f"by <@{record['user']}>")
    if record.get("requester") and record.get("requester") != record.get("user"):
        parts.append(f"requested by <@{record['requester']}>")
    if record.get("outcome"):
        took = f" in {record['seconds']}s" if record.get("seconds") else ""
        parts.append(f"{record['outcome']}{took}")
    if record.get("detail"):
        parts.append(record["detail"].replace("`", "'"))
    if record.get("request"):
        parts.append(f"request `{record['request']}`")
    return " · ".join(parts)


class AuditStream(Protocol):
    def append_audit(self, record: dict[str, str]) -> object: ...


class SlackPoster(Protocol):
    def post(self, channel: str, text: str) -> str: ...


class Auditor:
    def __init__(
        self,
        store: AuditStream,
        slack: SlackPoster | None = None,
        channel: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.slack, self.channel, self.clock = store, slack, channel, clock

    def record(self, event: Event, *, request: Request | None = None, **fields: object) -> None:
        self._write(entry(event, at=self.clock(), request=request, **fields))

    def transition(self, old: Request, new: Request) -> None:
        """The records of one request state change (see audit.for_transition)."""
        for record in for_transition(old, new, at=self.clock()):
            self._write(record)

    def _write(self, record: dict[str, str]) -> None:
        try:
            self.store.append_audit(record)
        except Exception:
            log.error("audit record not stored in Redis", extra=record, exc_info=True)
        log.info(record["event"], extra=record)
        if self.slack is not None and self.channel:
            try:
                self.slack.post(self.channel, line(record))
            except Exception as exc:  # the Slack adapter raises SlackError; none may fail the change
                what = getattr(exc, "code", type(exc).__name__)
                log.warning("audit record not mirrored to Slack (%s)", what, extra={"event": record["event"]})
