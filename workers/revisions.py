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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.requests import PAUSE_AUTOSYNC, Request
from workers.images import Outcome, Resolution, card_lines, images_in, nearest_tags, parse, repushed, short_digest
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


def images_of(manifest: str) -> tuple[str, ...]:
    """Every container and init container image of a release manifest, as it names them."""
    return tuple(images_in(parse_stream(manifest)))


def image_tag(image: str | None) -> str:
    """`harbor.example.com/plate/plate-web:1.4.0` -> `1.4.0`; a digest is shortened, after the tag when the
    image names both (`1.4.0@sha256:abcdef123456`, as plate-bot deploys by digest); no tag -> `latest`."""
    if not image:
        return "unknown"
    if "@" in image:
        name, digest = image.split("@", 1)
        tag = parse(name).tag
        return f"{tag}@{digest[:19]}" if tag else digest[:19]
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
    images: tuple[str, ...] = ()  # every image of the target's manifest, as it names them
    image_lines: tuple[str, ...] = ()  # what the registry says about them now (target_image_lines)

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
            *self.image_lines,
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


# --- the target's images now ----------------------------------------------------------------------------
#
# A rollback re-applies the target revision's manifest, so its pods pull what that manifest names: the
# recorded digest when the revision ran by digest (`repo:tag@sha256:…`, as plate-bot deploys charts that
# take `image.digest`), otherwise whatever the tag points at *now*. The pods that ran the revision may be long
# gone, so the manifest is the only record of what ran. What the check does with the registry's answers:
# - pinned, digest still there: the rollback runs exactly what the revision ran; if the tag moved or was
#   deleted since, the card says so (a note, the rollback is unaffected);
# - pinned, digest gone: refused. No pod can pull it and no push can bring those bytes back under that
#   digest; helm would only wait out its timeout. The card offers the repository's newest tags to deploy.
# - tag only, tag exists: the card shows the digest the pods will pull and says it may not be what ran;
#   the approval binds to that digest (a tag moved between approval and run refuses the run);
# - tag only, tag (or repository) gone: a warning with the newest tags; the rollback may still be approved
#   (nodes may have the image cached; the tag may be pushed again before approving);
# - registry unreachable, credentials refused, no access configured: a warning; the images are unchecked.


@dataclass(frozen=True)
class TargetImage:
    """One image of the rollback's target and what the registry says about it now."""

    spec: str  # as the target revision's manifest names it
    pulled: Resolution  # the reference the pods will pull: the recorded digest if pinned, else the tag
    tag_now: Resolution | None = None  # pinned and tagged: where the tag points now

    @property
    def pinned(self) -> bool:
        return self.pulled.image.digest is not None


def image_queries(names: Sequence[str]) -> list[str]:
    """What to ask the registries: each image as the manifest names it (by its digest when pinned: is it
    still there?), and a pinned image's tag on its own (where does it point now?)."""
    out: dict[str, None] = dict.fromkeys(names)
    for name in names:
        image = parse(name)
        if image.digest and image.tag:
            out.setdefault(f"{image.name}:{image.tag}", None)
    return list(out)


def target_images(names: Sequence[str], answers: Mapping[str, Resolution]) -> list[TargetImage]:
    """Join the registry's answers (query -> Resolution, for `image_queries(names)`) per target image."""
    out = []
    for name in names:
        image = parse(name)
        tag_now = answers.get(f"{image.name}:{image.tag}") if image.digest and image.tag else None
        out.append(TargetImage(name, answers[name], tag_now))
    return out


def _short(digest: str | None) -> str:
    return f"`{short_digest(digest)}`"


def _newest(r: Resolution) -> str:
    near = nearest_tags(r.tags)
    return f" (newest tags: {', '.join(f'`{t}`' for t in near)})" if near else ""


def _image_note(t: TargetImage, revision: int) -> str | None:
    image, pulled, now = t.pulled.image, t.pulled, t.tag_now
    if t.pinned:
        if pulled.outcome is not Outcome.RESOLVED or now is None:
            return None
        if now.outcome is Outcome.RESOLVED and now.digest != image.digest:
            return (
                f":warning: tag `{image.tag}` of `{image.name}` now points at {_short(now.digest)}, revision "
                f"{revision} ran {_short(image.digest)}; the rollback runs the revision's digest (its manifest "
                "pins it)"
            )
        if now.outcome is Outcome.MISSING:
            return (
                f":warning: tag `{image.tag}` of `{image.name}` no longer exists{_newest(now)}; the rollback runs "
                f"revision {revision}'s digest, which the registry still has"
            )
        return None
    if pulled.outcome is Outcome.MISSING:
        gone = f"repository `{image.name}`" if pulled.detail.startswith("repository") else f"tag `{image}`"
        return (
            f":warning: {gone} no longer exists{_newest(pulled)}: revision {revision} named it by tag only, so "
            "its pods will not start unless the tag is pushed again (or a node still has the image cached)"
        )
    return None


def target_image_lines(targets: Sequence[TargetImage], revision: int, env_name: str) -> tuple[str, ...]:
    """The rollback card's image lines: each image `repo:tag @ sha256:…` (the digest the pods will pull),
    then what changed in the registry since the revision ran, and what could not be checked."""
    if not targets:
        return ()
    lines = [f"*Target images* (what revision {revision}'s pods will pull):", *card_lines([t.pulled for t in targets])]
    lines += [note for t in targets if (note := _image_note(t, revision))]
    by_tag = [t for t in targets if not t.pinned and t.pulled.outcome is Outcome.RESOLVED]
    if by_tag:
        named = ", ".join(f"`{t.pulled.image.name.rsplit('/', 1)[-1]}:{t.pulled.image.tag}`" for t in by_tag)
        lines.append(
            f"Revision {revision} recorded no digest for {named}: the rollback pulls what the tag points at now "
            f"(the digest above), which may not be what revision {revision} ran"
        )
    unreachable = sorted({t.pulled.image.host for t in targets if t.pulled.outcome is Outcome.UNREACHABLE})
    lines += [f":warning: could not reach {host} to check the target's images: they are pulled unchecked"
              for host in unreachable]  # fmt: skip
    refused = sorted({(t.pulled.image.host, t.pulled.credential) for t in targets
                      if t.pulled.outcome is Outcome.REFUSED})  # fmt: skip
    lines += [
        f":warning: {host} refused plate-bot's credentials (Secret `{secret}`): the target's images are unchecked; "
        f"`/plate harbor-verify {env_name}` checks the pull-secret chain"
        for host, secret in refused
    ]
    return tuple(lines)


def target_images_blocking(targets: Sequence[TargetImage], revision: int) -> str | None:
    """Why the rollback cannot run at all, or None: a pinned digest the registry no longer has."""
    for t in targets:
        if t.pinned and t.pulled.outcome is Outcome.MISSING:
            image = t.pulled.image
            now = t.tag_now
            if now is not None and now.outcome is Outcome.RESOLVED:
                offer = f"; tag `{image.tag}` now points at {_short(now.digest)}: deploy it instead if that is wanted"
            else:
                near = nearest_tags(t.pulled.tags or (now.tags if now else ()))
                offer = f"; deploy one of its newest tags instead: {', '.join(f'`{x}`' for x in near)}" if near else ""
            return (
                f"revision {revision} runs `{image.name}@{image.digest}`, which the registry no longer has: "
                f"no pod could pull it{offer}"
            )
    return None


def target_image_pins(targets: Iterable[TargetImage]) -> dict[str, str]:
    """Tag-only images -> the digest their tag points at now: what the approval binds to. (A pinned image
    cannot move: the manifest, which the rollback digest binds, names its digest.)"""
    return {t.spec: t.pulled.digest for t in targets if not t.pinned and t.pulled.digest}


def target_images_moved(approved: Mapping[str, str], targets: Sequence[TargetImage]) -> str | None:
    """At run time: a tag-only image whose tag points elsewhere than when the rollback was approved, or
    that no longer exists. A registry that cannot be asked now refuses nothing (the kubelet will tell)."""
    known = {t.spec: t.pulled for t in targets if t.pulled.outcome in (Outcome.RESOLVED, Outcome.MISSING)}
    asked = {spec: digest for spec, digest in approved.items() if spec in known}
    changes = repushed(asked, {spec: r.digest for spec, r in known.items() if r.digest})
    if not changes:
        return None
    first = changes[0]
    image = known[first.image].image
    where = f"now {_short(first.now)}" if first.now else "it no longer exists"
    return (
        f"tag `{image.tag}` of `{image.name}` moved after the approval: approved {_short(first.approved)}, "
        f"{where}; request the rollback again"
    )
