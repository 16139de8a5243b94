"""PURE. A release's helm history as plate-bot reads it: which revision is live, which one a rollback goes
to (or why it cannot), what each revision runs, and who made it.

"Who" joins helm's history with plate-bot's own record of its mutating jobs (`change_record`, kept in
Redis by the store): a revision whose description is plate-bot's (`plate-bot <request> by <user>`, set
on every deploy) names its request; any other revision made while a plate-bot job held the environment
(a rollback, or the failed revision and the rollback of an `--atomic` upgrade) belongs to that job; the
rest were made outside plate-bot.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from core.requests import PAUSE_AUTOSYNC, Request
from workers.plan import parse_stream

SUCCESSFUL = ("deployed", "superseded")
UNUSABLE = ("pending-install", "pending-upgrade", "pending-rollback", "uninstalling", "uninstalled")
PLATE_DESCRIPTION = re.compile(r"^plate-bot ([0-9a-z]{4,64}) by ([A-Z0-9]{2,32})\b")
# helm stamps a revision when it starts working on it, inside the job that ran helm: after the job's
# start, before its end (a second of slack for the end, written once the job is over).
WINDOW_SLACK = 1.0
HISTORY_MAX = 256  # helm's own default for `history --max`: everything it keeps

Obj = dict[str, Any]


# --- helm history ---------------------------------------------------------------------------------------


def parse_time(text: str | None) -> float | None:
    """helm's RFC 3339 times (nanoseconds, `Z` or an offset) as epoch seconds; None if unreadable."""
    if not text:
        return None
    cleaned = re.sub(r"(\.\d{6})\d+", r"\1", str(text).strip()).replace("Z", "+00:00")
    try:
        return dt.datetime.fromisoformat(cleaned).timestamp()
    except ValueError:
        return None


def when(ts: float | None) -> str:
    return time.strftime("%d %b %H:%M UTC", time.gmtime(ts)) if ts is not None else "an unknown time"


@dataclass(frozen=True)
class Revision:
    number: int
    status: str
    chart: str = ""
    app_version: str = ""
    updated: float | None = None
    description: str = ""

    @property
    def successful(self) -> bool:
        return self.status in SUCCESSFUL

    def line(self) -> str:
        app = f" · app {self.app_version}" if self.app_version else ""
        return f"`{self.number}` {self.status} · {self.chart}{app} · {when(self.updated)}"


def parse_history(rows: list[Obj]) -> list[Revision]:
    """`helm history -o json` rows, oldest first; rows without a revision number are skipped."""
    revs = []
    for row in rows:
        try:
            number = int(row.get("revision"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        revs.append(
            Revision(
                number=number,
                status=str(row.get("status") or "unknown"),
                chart=str(row.get("chart") or ""),
                app_version=str(row.get("app_version") or ""),
                updated=parse_time(row.get("updated")),
                description=str(row.get("description") or ""),
            )
        )
    return sorted(revs, key=lambda r: r.number)


def live_revision(revs: list[Revision]) -> Revision | None:
    """The revision serving now: the last `deployed` one, else (a failed release) the newest."""
    deployed = [r for r in revs if r.status == "deployed"]
    return deployed[-1] if deployed else (revs[-1] if revs else None)


class InvalidTarget(Exception):
    """The rollback cannot go where it was asked to; `reason` says why, `available` where it could."""

    def __init__(self, reason: str, available: list[Revision]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.available = available

    def text(self, env: str, limit: int = 10) -> str:
        lines = [f":warning: I cannot roll back `{env}`: {self.reason}. Nothing was run."]
        if self.available:
            lines.append("Revisions you can roll back to (newest first):")
            lines += [f"• {r.line()}" for r in self.available[:limit]]
            if len(self.available) > limit:
                lines.append(f"… and {len(self.available) - limit} older")
            lines.append("Ask again with one of them: `/plate rollback " + env + " <revision>`.")
        return "\n".join(lines)


def choose_target(revs: list[Revision], requested: int | None) -> tuple[Revision, Revision]:
    """(live, target) for a rollback to `requested`, or to the last successfully deployed revision before
    the live one when it is None. Raises InvalidTarget with the revisions one could choose instead."""
    live = live_revision(revs)
    if live is None:
        raise InvalidTarget("the release is not installed, so there is nothing to roll back to", [])
    available = [r for r in reversed(revs) if r.number != live.number and r.status not in UNUSABLE]
    if requested is None:
        earlier = [r for r in available if r.number < live.number and r.successful]
        if not earlier:
            reason = f"there is no successfully deployed revision before the live revision {live.number}"
            raise InvalidTarget(reason, available)
        return live, earlier[0]
    if requested == live.number:
        raise InvalidTarget(f"revision {requested} is the live revision", available)
    found = next((r for r in revs if r.number == requested), None)
    if found is None:
        oldest, newest = revs[0].number, revs[-1].number
        if requested < oldest:
            raise InvalidTarget(
                f"revision {requested} is outside helm's kept history (it keeps {len(revs)} revisions, "
                f"the oldest is {oldest})",
                available,
            )
        raise InvalidTarget(f"revision {requested} does not exist (the newest is {newest})", available)
    if found.status in UNUSABLE:
        raise InvalidTarget(f"revision {requested} is `{found.status}`: helm cannot roll back to it", available)
    return live, found


# --- what a revision runs -----------------------------------------------------------------------------------


def workloads_of(manifest: str) -> tuple[str, ...]:
    """`Kind/name` of the Deployments and StatefulSets in a release manifest: what a rollout must reach."""
    objs = parse_stream(manifest)
    return tuple(k for k, o in sorted(objs.items()) if o.get("kind") in ("Deployment", "StatefulSet"))


def image_of(manifest: str) -> str | None:
    """The first container image of the release's first workload (what `image.tag` sets in the chart)."""
    objs = parse_stream(manifest)
    for key in sorted(objs):
        obj = objs[key]
        if obj.get("kind") in ("Deployment", "StatefulSet", "DaemonSet"):
            containers = (((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
            if containers and containers[0].get("image"):
                return str(containers[0]["image"])
    return None


def image_tag(image: str | None) -> str:
    """`harbor.example.com/plate/plate-web:1.4.0` -> `1.4.0`; a digest is shortened; no tag -> `latest`."""
    if not image:
        return "unknown"
    if "@" in image:
        return image.split("@", 1)[1][:19]
    name = image.rsplit("/", 1)[-1]
    return name.split(":", 1)[1] if ":" in name else "latest"


def rollback_digest(live: Revision, target: Revision, target_manifest: str) -> str:
    """Binds an approval to exactly this rollback: from this live revision to this target's manifest."""
    canonical = json.dumps({"live": live.number, "target": target.number, "manifest": target_manifest})
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- plate-bot's record of its own changes --------------------------------------------------------------


def change_record(
    request: Request,
    *,
    job: str,
    outcome: str,
    started: float,
    ended: float | None = None,
    deadline: float | None = None,
) -> Obj:
    """What the store keeps about one mutating job, self-contained (requests themselves expire)."""
    return {
        "request": request.id,
        "verb": request.verb,
        "env": request.env,
        "args": dict(request.args),
        "requester": request.requester,
        "approvers": [v.user for v in request.approvals],
        "plan_digest": request.plan_digest,
        "chosen": list(request.chosen),
        "channel": request.channel,
        "thread_ts": request.message_ts,
        "job": job,
        "outcome": outcome,
        "started": started,
        "ended": ended,
        "deadline": deadline,
    }


@dataclass(frozen=True)
class Origin:
    """Who made a revision: plate-bot's record of the job, or just the request named in helm's description."""

    record: Obj | None = None
    request: str | None = None
    user: str | None = None

    @property
    def by_plate_bot(self) -> bool:
        return self.request is not None

    def text(self) -> str:
        rec = self.record
        if rec is None and self.request is None:
            return "outside plate-bot"
        if rec is None:
            return f"plate-bot request `{self.request}` by <@{self.user}> (its record has expired)"
        what = " ".join([rec.get("verb", "?"), *[str(v) for k, v in sorted((rec.get("args") or {}).items())]])
        who = f"plate-bot {what}, requested by <@{rec.get('requester')}>"
        approvers = rec.get("approvers") or []
        who += f", approved by {', '.join(f'<@{u}>' for u in approvers)}" if approvers else ", no approval needed"
        return who


def origin_of(rev: Revision, records: list[Obj]) -> Origin:
    match = PLATE_DESCRIPTION.match(rev.description)
    if match:
        record = next((r for r in records if r.get("request") == match.group(1)), None)
        return Origin(record, match.group(1), match.group(2))
    if rev.updated is not None:
        for rec in records:
            start = rec.get("started")
            end = rec.get("ended") or rec.get("deadline") or start
            if start is not None and end is not None and float(start) <= rev.updated <= float(end) + WINDOW_SLACK:
                return Origin(rec, rec.get("request"), rec.get("requester"))
    return Origin()


def _shown(text: str, limit: int = 80) -> str:
    """helm's description, which anyone running helm writes: one line, no Slack markup, bounded."""
    cleaned = re.sub(r"[`*_~<>&]", "", " ".join(text.split()))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _took(rec: Obj) -> str:
    started, ended = rec.get("started"), rec.get("ended")
    if started is None or ended is None:
        return ""
    seconds = float(ended) - float(started)
    return f" in {seconds:.1f}s" if seconds < 60 else f" in {int(seconds // 60)}m{int(seconds % 60):02d}s"


def history_lines(
    env: str,
    release: str,
    revs: list[Revision],
    records: list[Obj],
    links: dict[str, str],
    *,
    count: int,
) -> list[str]:
    """The `/plate history` reply: the newest `count` revisions, each with who made it and how it went."""
    if not revs:
        return [f"*History of `{release}` in `{env}`*: the release is not installed."]
    live = live_revision(revs)
    shown = list(reversed(revs))[:count]
    lines = [f"*History of `{release}` in `{env}`* (newest {len(shown)} of {len(revs)} kept by helm)"]
    for rev in shown:
        head = f"• *{rev.number}* {rev.status}{' (live)' if live and rev.number == live.number else ''}"
        head += f" · {rev.chart}" + (f" · app {rev.app_version}" if rev.app_version else "") + f" · {when(rev.updated)}"
        origin = origin_of(rev, records)
        parts = [origin.text()]
        rec = origin.record
        if rec is not None:
            if rec.get("plan_digest"):
                parts.append(f"plan `{str(rec['plan_digest'])[:12]}`")
            parts.append(f"job {rec.get('outcome', '?')}{_took(rec)}")
            link = links.get(str(rec.get("request")))
            if link:
                parts.append(f"<{link}|thread>")
        if not PLATE_DESCRIPTION.match(rev.description) and rev.description:
            parts.append(f'helm: "{_shown(rev.description)}"')
        lines.append(f"{head}\n    {' · '.join(parts)}")
    return lines


# --- the rollback card --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArgoSync:
    """The Argo CD Application an environment names, as the rollback check found it."""

    app: str
    namespace: str
    found: bool = True
    automated: Obj | None = None
    error: str | None = None

    @property
    def active(self) -> bool:
        return self.found and self.error is None and self.automated is not None

    def lines(self) -> list[str]:
        where = f"Argo CD Application `{self.app}` (namespace `{self.namespace}`)"
        if self.error:
            return [
                f":warning: I could not read {where}: {self.error}. If it syncs automatically, it will put git's "
                "version back over this rollback."
            ]
        if not self.found:
            return [f"{where} was not found: nothing to pause."]
        if self.automated is None:
            return [f"{where}: automated sync is off; it will not undo this rollback."]
        flags = [k for k in ("prune", "selfHeal") if (self.automated or {}).get(k)]
        how = f" ({', '.join(flags)})" if flags else ""
        return [
            f":warning: {where} syncs automatically{how}: it will redeploy git's version over this rollback "
            "unless auto-sync is paused.",
            "*Approve and pause auto-sync* pauses it before `helm rollback` (the previous setting goes into the "
            "thread, to restore it later); *Approve (auto-sync stays on)* leaves it as it is.",
        ]


@dataclass(frozen=True)
class RollbackPlan:
    release: str
    live: Revision
    target: Revision
    live_image: str | None
    target_image: str | None
    target_origin: Origin
    backup: bool
    workloads: tuple[str, ...]
    digest: str
    argo: ArgoSync | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def short_digest(self) -> str:
        return self.digest[:12]

    @property
    def offers(self) -> tuple[str, ...]:
        return (PAUSE_AUTOSYNC,) if self.argo is not None and self.argo.active else ()

    def _revision(self, label: str, rev: Revision, image: str | None) -> str:
        app = f" · app {rev.app_version}" if rev.app_version else ""
        return (
            f"*{label}* revision {rev.number} · chart {rev.chart}{app} · image `{image_tag(image)}` · "
            f"deployed {when(rev.updated)} ({rev.status})"
        )

    def _helm_says(self) -> str:
        description = self.target.description
        return f' (helm: "{_shown(description)}")' if description and not PLATE_DESCRIPTION.match(description) else ""

    def summary(self) -> list[str]:
        """The lines on the approval card (and, without a card's plan, in the thread)."""
        lines = [
            f"*Rollback* `{self.release}`: revision *{self.live.number}* (live) → revision *{self.target.number}* · "
            f"check `{self.short_digest}`",
            self._revision("Live", self.live, self.live_image),
            self._revision("Target", self.target, self.target_image),
            f"*Target deployed by:* {self.target_origin.text()}" + self._helm_says(),
            f"*plate-bot backup of revision {self.target.number}:* "
            + ("yes" if self.backup else "none (helm's own history still has the revision)"),
        ]
        if not self.target.successful:
            status = self.target.status
            lines.append(f":warning: Revision {self.target.number} ended `{status}`: it may never have run.")
        lines += list(self.notes)
        if self.argo is not None:
            lines += self.argo.lines()
        return lines
