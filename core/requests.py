"""PURE. The life of a change request: pending -> approved | rejected | cancelled | expired.

Immutable: each transition returns a new Request and raises a UserError when the click must not count.
Time is passed in (`now`, epoch seconds), never read here, so expiry is tested without a clock.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from config.environments import Environment, PlateConfig
from core.errors import Conflict, NotAllowed
from core.versioned import Versioned

# Choices a card may offer besides plain Approve; the approver's pick is kept in `Request.chosen`.
PAUSE_AUTOSYNC = "pause-autosync"  # a rollback: pause the Argo CD Application's automated sync first


class Verb(StrEnum):
    DEPLOY = "deploy"
    ROLLBACK = "rollback"
    HARBOR_VERIFY = "harbor-verify"
    HARBOR_BOOTSTRAP = "harbor-bootstrap"
    STATUS = "status"
    HISTORY = "history"
    DIAGNOSE = "diagnose"
    ARGOCD = "argocd"  # takes an Argo CD application name; the environment is the one it deploys
    APPS = "apps"  # answered from Redis at once: environments x apps, live revision, lock
    HELP = "help"

    @property
    def mutating(self) -> bool:
        """Verbs that change the cluster: approval rules and the environment lock apply."""
        return self in (Verb.DEPLOY, Verb.ROLLBACK, Verb.HARBOR_BOOTSTRAP)

    @property
    def per_app(self) -> bool:
        """Verbs about one app (Helm release) of an environment; the others are about all of it."""
        return self in (Verb.DEPLOY, Verb.ROLLBACK, Verb.STATUS, Verb.HISTORY, Verb.DIAGNOSE, Verb.ARGOCD)


class Status(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # approved, or needed no approval: a job was queued
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        return self is not Status.PENDING


class Vote(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    user: str
    at: float


class Request(Versioned):
    """A request for a verb on an environment, from its creation to its decision: the approval state
    machine (pure transitions, `with_*`). Stored in Redis and carried by its jobs (`Versioned`)."""

    ADDED = ("app", "lock", "origin", "images")

    id: str
    verb: str
    env: str
    # The app (Helm release) it is about, in an environment of several apps; "" for verbs about the whole
    # environment and in one-app environments (records written before apps existed read the same way).
    app: str = ""
    # The Redis lock it holds while it runs ("" before apps existed: the environment's name).
    lock: str = ""
    requester: str
    channel: str
    created_at: float
    expires_at: float
    approvals_required: int
    args: dict[str, Any] = Field(default_factory=dict)
    status: Status = Status.PENDING
    approvals: tuple[Vote, ...] = ()
    decided_by: str | None = None
    decided_at: float | None = None
    reason: str | None = None
    # Slack coordinates, filled once the card is posted.
    message_ts: str | None = None
    # Where it was asked from, when not a command: the incident thread's link (Request rollback).
    origin: str | None = None
    # Why this request needs more approvals than the environment's default (a freeze, say).
    notes: tuple[str, ...] = ()
    # Deploys that need approval are planned first; the approval binds to the plan's digest.
    planned: bool = True
    plan_digest: str | None = None
    plan_summary: tuple[str, ...] = ()
    # Image (as the manifests name it) -> the manifest digest its tag resolved to when planned: the deploy
    # resolves again and names a re-pushed tag (the plan digest includes these too).
    images: dict[str, str] = Field(default_factory=dict)
    # What the plan offers approvers to choose (e.g. PAUSE_AUTOSYNC), and what they chose.
    offers: tuple[str, ...] = ()
    chosen: tuple[str, ...] = ()

    @property
    def lock_name(self) -> str | None:
        """The lock its job holds, if any. Records from before apps existed lack `lock`: theirs was the
        environment's name, for changes that were not dry runs."""
        if self.lock:
            return self.lock
        changes = self.verb in (Verb.DEPLOY, Verb.ROLLBACK, Verb.HARBOR_BOOTSTRAP) and not self.args.get("dry_run")
        return self.env if changes else None

    @property
    def where(self) -> str:
        """How messages name what it is about: `prod`, or `prod/plate-api`."""
        return f"{self.env}/{self.app}" if self.app else self.env

    @property
    def job_id(self) -> str:
        """RQ job id: derived from the request so a job can exist at most once per request."""
        return f"plate-{self.id}"

    def needs_approval(self) -> bool:
        return self.approvals_required > 0

    @property
    def queues_at_once(self) -> bool:
        """Nothing to plan and nobody to ask: it goes straight to the queue (its lock claimed with it)."""
        return self.planned and not self.needs_approval()

    def is_expired(self, now: float) -> bool:
        return self.status is Status.PENDING and now >= self.expires_at

    def _check_open(self, now: float) -> None:
        if self.status.final:
            raise Conflict(already_decided(self))
        if self.is_expired(now):
            raise Conflict(f"This request expired {_hhmm(self.expires_at)} UTC; nothing was run. Request it again.")

    def with_approval(self, user: str, now: float, *, is_approver: bool, option: str | None = None) -> Request:
        """Count `user`'s approval, with one of the plan's `offers` if they picked it. The requester never
        counts, whatever groups they are in."""
        self._check_open(now)
        if user == self.requester:
            raise NotAllowed("You cannot approve your own request; a second person has to.")
        if not self.planned:
            raise Conflict("The plan is still being computed; approve once it is on the card.")
        if not is_approver:
            raise NotAllowed(f"You are not an approver for `{self.env}`.")
        if any(v.user == user for v in self.approvals):
            raise Conflict(f"You already approved this; it needs {self.approvals_required - len(self.approvals)} more.")
        if option is not None and option not in self.offers:
            raise Conflict("That choice is not offered for this request any more; nothing was changed.")
        chosen = (*self.chosen, option) if option is not None and option not in self.chosen else self.chosen
        votes = (*self.approvals, Vote(user=user, at=now))
        if len(votes) < self.approvals_required:
            return self.evolve(approvals=votes, chosen=chosen)
        return self.evolve(approvals=votes, chosen=chosen, status=Status.APPROVED, decided_by=user, decided_at=now)

    def with_rejection(self, user: str, now: float, *, is_approver: bool, reason: str | None = None) -> Request:
        self._check_open(now)
        if not is_approver:
            raise NotAllowed(f"Only approvers for `{self.env}` can reject; the requester can Cancel.")
        return self.evolve(status=Status.REJECTED, decided_by=user, decided_at=now, reason=reason)

    def with_cancel(self, user: str, now: float) -> Request:
        self._check_open(now)
        if user != self.requester:
            raise NotAllowed(f"Only <@{self.requester}>, who asked, can cancel this request.")
        return self.evolve(status=Status.CANCELLED, decided_by=user, decided_at=now)

    def with_expiry(self, now: float) -> Request:
        if not self.is_expired(now):
            raise Conflict("This request has not expired.")
        return self.evolve(status=Status.EXPIRED, decided_at=self.expires_at)

    def with_plan(
        self,
        digest: str,
        summary: list[str],
        offers: tuple[str, ...] = (),
        images: dict[str, str] | None = None,
        extra: tuple[str, ...] = (),
    ) -> Request:
        """The plan on the request; each reason in `extra` (an image policy finding, say) asks one more
        approval than the environment's default and is shown on the card."""
        if self.status.final:
            raise Conflict(already_decided(self))
        return self.evolve(
            planned=True,
            plan_digest=digest,
            plan_summary=tuple(summary),
            offers=tuple(offers),
            images=images or {},
            approvals_required=self.approvals_required + len(extra),
            notes=(*self.notes, *extra),
        )

    def with_nothing_to_do(self, now: float, reason: str) -> Request:
        """The plan found no change: close the request without asking anyone."""
        if self.status.final:
            raise Conflict(already_decided(self))
        return self.evolve(status=Status.CANCELLED, decided_at=now, reason=reason, planned=True)

    def queued_now(self, now: float) -> Request:
        """An environment that needs no approval: the request goes straight to the queue."""
        return self.evolve(status=Status.APPROVED, decided_at=now)

    def with_message(self, ts: str) -> Request:
        return self.evolve(message_ts=ts)


def target_of(config: PlateConfig, request: Request) -> Environment | None:
    """The environment as `request` sees it: its app's view for a verb about one app (the environment's
    default app for records without one), the whole environment otherwise; None if no longer configured."""
    env = config.environments.get(request.env)
    if env is None or request.verb not in _PER_APP:
        return env
    try:
        return env.for_app(request.app or None)
    except KeyError:
        return None


_PER_APP = frozenset(v.value for v in Verb if v.per_app)


def _hhmm(ts: float) -> str:
    return time.strftime("%H:%M", time.gmtime(ts))


def already_decided(request: Request) -> str:
    who = f" by <@{request.decided_by}>" if request.decided_by else ""
    if request.status is Status.APPROVED and not request.needs_approval():
        return "This request was already queued."
    return f"This request was already {request.status.value}{who}."


def new_request(
    request_id: str,
    *,
    verb: str,
    env: str,
    requester: str,
    channel: str,
    now: float,
    ttl: int,
    approvals_required: int,
    args: dict[str, Any] | None = None,
    notes: tuple[str, ...] = (),
    planned: bool = True,
    app: str = "",
    lock: str = "",
) -> Request:
    return Request(
        id=request_id,
        verb=verb,
        env=env,
        app=app,
        lock=lock,
        requester=requester,
        channel=channel,
        created_at=now,
        expires_at=now + ttl,
        approvals_required=approvals_required,
        args=dict(args or {}),
        notes=notes,
        planned=planned,
    )
