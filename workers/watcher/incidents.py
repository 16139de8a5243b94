"""PURE. Once per incident, not once per event: the incident record, its transitions, and the Slack
messages it still owes.

An incident is keyed by environment + owning workload + reason class. The first observation opens it;
later ones only bump its counter and "last seen". The record says what Slack already shows (root ts,
diagnosis posted, shown counter, resolution posted), so what remains to send is derived from it:
a watcher that restarts, or another replica taking over, sends exactly what is still owed.

`SlackBudget` keeps the sending within Slack's limits (about one message per second per channel; Tier 3
`chat.update`, ~50 a minute): due effects wait and coalesce (a later counter replaces an earlier one),
nothing is dropped. Time is always passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from core.versioned import Versioned
from workers.watcher.classify import Observation, Reason, severity

REOPEN_WINDOW = 1800.0  # a recurrence within this long after resolution reopens the same thread
QUIET = 120.0  # healthy and unseen for this long before an incident counts as resolved
UPDATE_INTERVAL = 30.0  # a root message shows a new counter at most this often
PENDING_STALE = 60.0  # a claimed post not confirmed within this long is tried again


class Phase(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class Effect(StrEnum):
    """What Slack still has to be told, in the order it is told."""

    ROOT = "root"  # post the root message in the incident channel
    DIAGNOSIS = "diagnosis"  # post the diagnosis thread (a few replies)
    REOPEN = "reopen"  # reply: it is happening again
    RESOLUTION = "resolution"  # reply: resolved after N min
    UPDATE = "update"  # edit the root: counter, last seen, open/resolved

    @property
    def posts(self) -> bool:
        return self is not Effect.UPDATE


class Outcome(StrEnum):
    OPENED = "opened"
    DEDUPLICATED = "deduplicated"
    REOPENED = "reopened"
    RESOLVED = "resolved"


class Incident(Versioned):
    """One incident: a workload's reason class in an environment, from first sight to resolution, and
    what Slack shows of it. Kept in Redis (`Versioned`: read by older and newer watchers alike)."""

    # Written only when set (core.versioned): an incident of no app keeps the shape older watchers read.
    ADDED: ClassVar[tuple[str, ...]] = ("app",)

    key: str
    env: str
    namespace: str
    # The environment's app (Helm release) the workload belongs to; "" when none is known (and in records
    # written before apps existed). Derived from the workload, not part of the key: a defaulted field.
    app: str = ""
    kind: str
    name: str
    reason: Reason
    severity: str
    channel: str
    detail: str
    source: str
    first_seen: float
    last_seen: float
    count: int = 1
    phase: Phase = Phase.OPEN
    resolved_at: float | None = None
    reopened: int = 0
    # What Slack shows.
    root_ts: str | None = None
    diagnosed: bool = False
    reopen_posted: int = 0
    resolved_posted: bool = False
    shown_count: int = 0
    shown_phase: str = ""
    shown_at: float = 0.0
    # A post claimed by a watcher (compare-and-set) and not yet confirmed: no one else sends it meanwhile.
    pending: str | None = None
    pending_at: float = 0.0
    v: int = 0  # version for compare-and-set in Redis

    @property
    def workload(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def active(self) -> bool:
        """Kept in Redis' active index: open, or resolved with a reply still owed."""
        return self.phase is Phase.OPEN or not self.resolved_posted or self.root_ts is None

    # --- transitions ----------------------------------------------------------------------------------
    def observed(self, obs: Observation, now: float, times: int = 1) -> Incident:
        """`times` recurrences, the latest being `obs`: counter and last seen; a resolved incident comes
        back open (same thread)."""
        changes: dict[str, Any] = {"count": self.count + times, "last_seen": max(self.last_seen, now)}
        changes["detail"], changes["source"] = obs.detail, obs.source
        if obs.app and obs.app != self.app:
            changes["app"] = obs.app
        if self.phase is Phase.RESOLVED:
            changes.update(phase=Phase.OPEN, resolved_at=None, reopened=self.reopened + 1, resolved_posted=False)
        return self.evolve(**changes)

    def resolved(self, now: float) -> Incident:
        return self.evolve(phase=Phase.RESOLVED, resolved_at=now)

    def claimed(self, effect: Effect, now: float) -> Incident:
        return self.evolve(pending=effect.value, pending_at=now)

    def posted(self, effect: Effect, now: float, ts: str | None = None) -> Incident:
        """Record what an effect made Slack show."""
        base = self.evolve(pending=None, pending_at=0.0)
        if effect is Effect.ROOT:
            return base.evolve(root_ts=ts, shown_count=self.count, shown_phase=self.phase.value, shown_at=now)
        if effect is Effect.DIAGNOSIS:
            return base.evolve(diagnosed=True)
        if effect is Effect.REOPEN:
            return base.evolve(reopen_posted=self.reopened)
        if effect is Effect.RESOLUTION:
            return base.evolve(resolved_posted=True)
        return base.evolve(shown_count=self.count, shown_phase=self.phase.value, shown_at=now)

    def minutes_open(self) -> int:
        end = self.resolved_at if self.resolved_at is not None else self.last_seen
        return max(1, round((end - self.first_seen) / 60))


def open_incident(obs: Observation, now: float, *, channel: str, production: bool) -> Incident:
    start = obs.since if obs.since is not None and obs.since <= now else now
    w = obs.workload
    return Incident(
        key=obs.key,
        env=obs.env,
        namespace=w.namespace,
        app=obs.app,
        kind=w.kind,
        name=w.name,
        reason=obs.reason,
        severity=severity(obs.reason, production),
        channel=channel,
        detail=obs.detail,
        source=obs.source,
        first_seen=start,
        last_seen=now,
    )


def on_observation(
    current: Incident | None,
    obs: Observation,
    now: float,
    *,
    channel: str,
    production: bool,
    reopen_window: float = REOPEN_WINDOW,
) -> tuple[Incident, Outcome]:
    """The dedup rule: new key -> open; open -> count it; resolved lately -> reopen the same thread;
    resolved long ago (and fully reported) -> a new incident."""
    if current is None:
        return open_incident(obs, now, channel=channel, production=production), Outcome.OPENED
    if current.phase is Phase.OPEN:
        return current.observed(obs, now), Outcome.DEDUPLICATED
    recent = current.resolved_at is None or now - current.resolved_at <= reopen_window
    if recent or not current.resolved_posted:
        return current.observed(obs, now), Outcome.REOPENED
    fresh = open_incident(obs, now, channel=channel, production=production)
    return fresh.evolve(v=current.v), Outcome.OPENED


@dataclass(slots=True)
class Seen:
    """One round's observations of one incident key: the first (it may open or reopen the incident), the
    latest (its detail and source are what the root shows) and how many."""

    first: Observation
    first_at: float
    last: Observation
    last_at: float
    times: int = 1


class Round:
    """A round's observations grouped by incident key, in the order keys first appeared. Under an event
    storm one key recurs many times a round; folding them into one transition (`on_seen`) makes the dedup
    cost per incident per round instead of per event."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: dict[str, Seen] = {}

    def add(self, obs: Observation, now: float) -> None:
        key = obs.key
        seen = self.seen.get(key)
        if seen is None:
            self.seen[key] = Seen(obs, now, obs, now)
        else:
            seen.last, seen.last_at = obs, now
            seen.times += 1

    def pending(self) -> list[tuple[str, Seen]]:
        return list(self.seen.items())

    def done(self, key: str) -> None:
        """`key` is settled. Until then its observations stay: a round that fails half-way (Redis away)
        keeps what it had not settled, and the next round adds to it."""
        self.seen.pop(key, None)


def on_seen(
    current: Incident | None,
    seen: Seen,
    *,
    channel: str,
    production: bool,
    reopen_window: float = REOPEN_WINDOW,
) -> tuple[Incident, Outcome]:
    """The same as `on_observation` for each of the round's observations in turn, in one step: the first
    decides (open, reopen, a new incident, or counted); every later one finds the incident open, so it is
    only counted. The outcome is the first one's."""
    incident, outcome = on_observation(
        current, seen.first, seen.first_at, channel=channel, production=production, reopen_window=reopen_window
    )
    if seen.times > 1:
        incident = incident.observed(seen.last, seen.last_at, seen.times - 1)
    return incident, outcome


def due_resolution(incident: Incident, healthy: bool, now: float, quiet: float = QUIET) -> bool:
    return incident.phase is Phase.OPEN and healthy and now - incident.last_seen >= quiet


def owed(incident: Incident, now: float, update_interval: float = UPDATE_INTERVAL) -> Effect | None:
    """The next Slack effect this incident is owed now, if any (one at a time, in order)."""
    if incident.pending is not None and now - incident.pending_at < PENDING_STALE:
        return None  # someone is sending it
    if incident.root_ts is None:
        return Effect.ROOT
    if not incident.diagnosed:
        return Effect.DIAGNOSIS
    if incident.reopen_posted < incident.reopened and incident.phase is Phase.OPEN:
        return Effect.REOPEN
    if incident.phase is Phase.RESOLVED and not incident.resolved_posted:
        return Effect.RESOLUTION
    if incident.shown_phase != incident.phase.value:
        return Effect.UPDATE
    if incident.shown_count != incident.count and now - incident.shown_at >= update_interval:
        return Effect.UPDATE
    return None


@dataclass
class SlackBudget:
    """Sending allowance: posts at most one per `post_interval` per channel; root edits from a token bucket
    refilled at `updates_per_minute` holding at most `update_burst` (chat.update is Tier 3, ~50 a minute
    for the workspace): in any minute at most burst + rate edits."""

    post_interval: float = 1.0
    updates_per_minute: float = 40.0
    update_burst: float = 10.0
    _next_post: dict[str, float] = field(default_factory=dict)
    _tokens: float = -1.0
    _refilled: float = 0.0

    def _refill(self, now: float) -> None:
        if self._tokens < 0:
            self._tokens, self._refilled = self.update_burst, now
        gained = max(0.0, now - self._refilled) * self.updates_per_minute / 60.0
        self._tokens = min(self.update_burst, self._tokens + gained)
        self._refilled = max(self._refilled, now)

    def allows(self, effect: Effect, channel: str, now: float) -> bool:
        if effect.posts:
            return self.may_post(channel, now)
        self._refill(now)
        return self._tokens >= 1.0

    def may_post(self, channel: str, now: float) -> bool:
        """A post in `channel` is allowed now (incidents' and release notices' posts share the pace)."""
        return now >= self._next_post.get(channel, 0.0)

    def spend_post(self, channel: str, now: float, messages: int = 1) -> None:
        start = max(now, self._next_post.get(channel, 0.0))
        self._next_post[channel] = start + self.post_interval * max(1, messages)

    def updates_left(self, now: float) -> int:
        self._refill(now)
        return int(self._tokens)

    def spend(self, effect: Effect, channel: str, now: float, messages: int = 1) -> None:
        if effect.posts:
            self.spend_post(channel, now, messages)
        else:
            self._refill(now)
            self._tokens -= 1.0


_ORDER = {Effect.ROOT: 0, Effect.RESOLUTION: 1, Effect.REOPEN: 2, Effect.DIAGNOSIS: 3, Effect.UPDATE: 4}


def next_sends(
    incidents: list[Incident], now: float, budget: SlackBudget, update_interval: float = UPDATE_INTERVAL
) -> list[tuple[Effect, Incident]]:
    """What to send now within the budget: roots first (the alert matters most), then resolutions and
    reopenings, diagnoses, and counter edits last; older incidents first within each. The caller spends
    the budget for what it actually sends."""
    due = [(effect, inc) for inc in incidents if (effect := owed(inc, now, update_interval)) is not None]
    due.sort(key=lambda pair: (_ORDER[pair[0]], pair[1].first_seen, pair[1].key))
    chosen: list[tuple[Effect, Incident]] = []
    posting: set[str] = set()
    updates = budget.updates_left(now)
    for effect, inc in due:
        if effect.posts:
            if inc.channel in posting or not budget.allows(effect, inc.channel, now):
                continue
            posting.add(inc.channel)
        elif updates > 0:
            updates -= 1
        else:
            continue
        chosen.append((effect, inc))
    return chosen
