"""The App Home tab: per environment the live release (as the last job saw it), the lock holder,
pending requests with Approve/Reject for those who may approve, and the last operations with links to
their threads. Also the record jobs keep of a release, built from `helm status -o json`.

The view is built by pure functions (`home_view`); `HomeTab` publishes it when a user opens Home, and
again for recent viewers when something changes (a request is created or decided, a job ends), through
the ports it is given (the store, the Slack client). Cheap by construction: the data is one Redis
snapshot (no helm, no Kubernetes), and only users who opened Home within `RECENT` seconds are refreshed,
at most `MAX_VIEWERS` of them. Publishing never raises: Home is a convenience, the request or job that
triggered it has already happened.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

from config.environments import Environment, PlateConfig
from core import messages, policy
from core.blocks import HOME_BLOCKS, MESSAGE_BLOCKS, SECTION_CHARS, Blocks, actions, button, context, section
from core.requests import PAUSE_AUTOSYNC, Request
from core.text import clip, parse_time

MAX_BLOCKS = HOME_BLOCKS  # Slack's limit for a Home view
PENDING_PER_ENV = 5
OPS_SHOWN = 5
_BY = re.compile(r"plate-bot (?P<request>\w+) by (?P<user>[UW][A-Z0-9]+)")
_STATUS_ICON = {"deployed": ":large_green_circle:", "failed": ":red_circle:", "superseded": ":white_circle:"}
_OUTCOME_ICON = {
    "succeeded": ":white_check_mark:",
    "failed": ":x:",
    "crashed": ":boom:",
    "timeout": ":hourglass:",
    "lost": ":skull:",
}


# --- what jobs record ---------------------------------------------------------------------------------


def image_tag(status: Mapping[str, Any]) -> str | None:
    """The image tag a release runs: `--set-string image.tag`, else the chart's default, else appVersion."""
    chart = status.get("chart") or {}
    for values in (status.get("config") or {}, chart.get("values") or {}):
        tag = (values.get("image") or {}).get("tag") if isinstance(values.get("image"), dict) else None
        if isinstance(tag, str | int | float) and not isinstance(tag, bool) and str(tag):  # YAML may say anything
            return str(tag)
    app_version = (chart.get("metadata") or {}).get("appVersion")
    return str(app_version) if app_version else None


def release_record(
    status: Mapping[str, Any] | None, *, previous: Mapping[str, Any] | None, now: float
) -> dict[str, Any]:
    """What Home shows of a release, from `helm status -o json` (None: not installed). Only the fields
    named here are kept: the status JSON also carries user-supplied values, which may hold secrets."""
    if status is None:
        return {"installed": False, "seen_at": now}
    info = status.get("info") or {}
    meta = (status.get("chart") or {}).get("metadata") or {}
    revision = int(status.get("version") or 0)
    description = str(info.get("description") or "")
    by = _BY.search(description)
    deployed_by, request = (by["user"], by["request"]) if by else (None, None)
    if by is None and previous and previous.get("revision") == revision:
        deployed_by, request = previous.get("deployed_by"), previous.get("request")
    return {
        "installed": True,
        "revision": revision,
        "status": str(info.get("status") or "unknown"),
        "chart": f"{meta.get('name')}-{meta.get('version')}",
        "app_version": meta.get("appVersion"),
        "image_tag": image_tag(status),
        "deployed_at": parse_time(info.get("last_deployed")),
        "deployed_by": deployed_by,
        "request": request,
        "seen_at": now,
    }


def operation_entry(
    request: Request, *, outcome: str, summary: str, ended_at: float, link: str | None
) -> dict[str, Any]:
    """One line of an environment's "last operations"."""
    return {
        "request": request.id,
        "verb": request.verb,
        "app": request.app,
        "user": request.requester,
        "approvers": [v.user for v in request.approvals],
        "dry_run": bool(request.args.get("dry_run")),
        "outcome": outcome,
        "summary": clip(summary, 160),
        "ended_at": ended_at,
        "channel": request.channel,
        "thread_ts": request.message_ts,
        "link": link,
    }


# --- the view -----------------------------------------------------------------------------------------


def _date(ts: float | None) -> str:
    """Slack renders this in the reader's time zone; the fallback is UTC."""
    if not ts:
        return "?"
    fallback = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))
    return f"<!date^{int(ts)}^{{date_short_pretty}} {{time}}|{fallback}>"


def release_lines(record: Mapping[str, Any] | None, env: Environment) -> str:
    if record is None:
        return f"_No release seen yet: `/plate status {env.name}` records it._"
    if not record.get("installed"):
        return f":white_circle: `{env.release}` is not installed (seen {_date(record.get('seen_at'))})"
    status = str(record.get("status"))
    icon = _STATUS_ICON.get(status, ":hourglass_flowing_sand:" if status.startswith("pending") else ":red_circle:")
    tag = f" · image `{record['image_tag']}`" if record.get("image_tag") else ""
    head = f"{icon} *revision {record.get('revision')}* · `{record.get('chart')}`{tag} · {status}"
    by = f" by <@{record['deployed_by']}>" if record.get("deployed_by") else ""
    return f"{head}\nDeployed {_date(record.get('deployed_at'))}{by} · as of {_date(record.get('seen_at'))}"


def lock_line(holder: Mapping[str, Any] | None) -> str:
    if not holder:
        return ":unlock: Not locked"
    return (
        f":lock: Locked by `{holder.get('request')}`: {holder.get('verb', 'a change')} requested by "
        f"<@{holder.get('user')}>, {holder.get('state', 'running')} since {_date(float(holder.get('since') or 0))}"
    )


def _pending_blocks(request: Request, viewer: str, may_approve: bool) -> Blocks:
    what = " ".join(f"`{v}`" for k, v in request.args.items() if k in ("image_tag", "revision"))
    dry = " (dry run)" if request.args.get("dry_run") else ""
    app = f" `{request.app}`" if request.app else ""
    need = request.approvals_required - len(request.approvals)
    text = (
        f":raised_hand: *{request.verb}*{app}{dry} {what} requested by <@{request.requester}> · "
        f"needs {need} more approval{'s' if need != 1 else ''} · expires {_date(request.expires_at)}"
    )
    if request.plan_summary:
        text += "\n" + clip(request.plan_summary[0], 200)
    blocks: Blocks = [section(text)]
    voted = {v.user for v in request.approvals}
    if not request.planned:
        blocks.append(context(":hourglass_flowing_sand: Computing the plan…"))
    elif may_approve and viewer != request.requester and viewer not in voted:
        approve = [button("Approve", messages.APPROVE, request.id, "primary")]
        if PAUSE_AUTOSYNC in request.offers:
            approve = [
                button("Approve and pause auto-sync", messages.APPROVE_PAUSE, request.id, "primary"),
                button("Approve (auto-sync stays on)", messages.APPROVE, request.id),
            ]
        reject = button("Reject", messages.REJECT, request.id, "danger")
        blocks.append(actions(f"home:{request.id}", [*approve, reject]))
    elif viewer == request.requester:
        blocks.append(context("Your request: waiting for an approver."))
    return blocks


def _operation_line(op: Mapping[str, Any]) -> str:
    icon = _OUTCOME_ICON.get(str(op.get("outcome")), ":grey_question:")
    dry = " (dry run)" if op.get("dry_run") else ""
    link = f" · <{op['link']}|thread>" if op.get("link") else ""
    app = f" `{op['app']}`" if op.get("app") else ""
    return (
        f"{icon} *{op.get('verb')}*{app}{dry} by <@{op.get('user')}> · {_date(op.get('ended_at'))} · "
        f"{op.get('summary') or op.get('outcome')}{link}"
    )


def release_keys(envs: list[Environment]) -> list[str]:
    """The Redis names of every environment and app in `envs` (locks and release records)."""
    keys = [k for env in envs for k in (env.name, *(env.for_app(a).key for a in env.apps))]
    return list(dict.fromkeys(keys))


def app_line(app: Environment, record: Mapping[str, Any] | None, holder: Mapping[str, Any] | None) -> str:
    """One app in one line: revision, image tag, status, and who holds its lock."""
    if record is None:
        state = "_not seen yet_"
    elif not record.get("installed"):
        state = ":white_circle: not installed"
    else:
        status = str(record.get("status"))
        icon = _STATUS_ICON.get(status, ":hourglass_flowing_sand:" if status.startswith("pending") else ":red_circle:")
        tag = f" · `{record['image_tag']}`" if record.get("image_tag") else ""
        state = f"{icon} rev {record.get('revision')}{tag} · {status}"
    lock = f" · :lock: {holder.get('verb', 'a change')} by <@{holder.get('user')}>" if holder else ""
    return f"`{app.app}` {state}{lock}"


def _app_lines(env: Environment, snapshot: Mapping[str, Any]) -> list[str]:
    """A line per app of `env`, in the file's order, from the snapshot's release records and locks."""
    views = [env.for_app(app) for app in env.apps]
    return [app_line(v, snapshot["releases"].get(v.key), snapshot["locks"].get(v.key)) for v in views]


def apps_text(env: Environment, snapshot: Mapping[str, Any], limit: int = SECTION_CHARS) -> str:
    """The environment's apps, a line each, cut to fit one section: the rest is counted, not dropped
    silently (`/plate apps <env>` lists them in full, a section per 3,000 characters)."""
    return fit_lines(_app_lines(env, snapshot), limit, lambda n: f"…and {n} more: `/plate apps {env.name}`")


def fit_lines(lines: list[str], limit: int, more: Callable[[int], str]) -> str:
    """As many whole lines as fit in `limit` characters, then `more(count left out)`."""
    out: list[str] = []
    used = 0
    for n, line in enumerate(lines):
        tail = len(more(len(lines) - n)) + 1
        if used + len(line) + 1 + (tail if n < len(lines) - 1 else 0) > limit:
            out.append(more(len(lines) - n))
            break
        out.append(line)
        used += len(line) + 1
    return "\n".join(out)


def apps_reply(envs: list[Environment], snapshot: Mapping[str, Any], hidden: int = 0) -> tuple[str, Blocks]:
    """`/plate apps`: per environment its apps (revision, image, lock), within one message's limits: a
    section per 3,000 characters of lines, at most MESSAGE_BLOCKS blocks (the rest counted)."""
    blocks: Blocks = []
    total = sum(len(e.apps) for e in envs)
    room = MESSAGE_BLOCKS - 1 - (1 if hidden else 0)  # the "No room" line, and the "not shown" one
    for n, env in enumerate(envs):
        held = snapshot["locks"].get(env.name) if len(env.apps) > 1 else None
        head = f"*{env.name}* · {len(env.apps)} app{'s' if len(env.apps) != 1 else ''} in `{env.namespace}`"
        if held:
            head += f" · :lock: whole environment: {held.get('verb')} by <@{held.get('user')}>"
        chunks = _sections(env, snapshot)
        if len(blocks) + 1 + len(chunks) > room:
            rest = ", ".join(f"`{e.name}`" for e in envs[n:])
            blocks.append(context(f"No room for {rest}: ask `/plate apps <env>`."))
            break
        blocks += [section(head), *chunks]
    if hidden:
        blocks.append(context(f"{hidden} environment{'s' if hidden != 1 else ''} not shown: not yours to read here."))
    if not blocks:
        blocks.append(section("No environments to show."))
    return f"{total} app{'s' if total != 1 else ''} in {len(envs)} environment{'s' if len(envs) != 1 else ''}", blocks


def _sections(env: Environment, snapshot: Mapping[str, Any]) -> Blocks:
    out: Blocks = []
    chunk: list[str] = []
    size = 0
    for line in _app_lines(env, snapshot):
        if size + len(line) + 1 > SECTION_CHARS and chunk:
            out.append(section("\n".join(chunk)))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        out.append(section("\n".join(chunk)))
    return out


def _env_blocks(
    env: Environment, snapshot: Mapping[str, Any], viewer: str, approver_of: Collection[str], pending: list[Request]
) -> Blocks:
    if len(env.apps) > 1:
        blocks: Blocks = [
            {"type": "divider"},
            section(f"*{env.name}* · {len(env.apps)} apps in `{env.namespace}`"),
            section(apps_text(env, snapshot)),
        ]
        if held := snapshot["locks"].get(env.name):
            blocks.append(context(lock_line(held)))
    else:
        app = env.for_app()
        blocks = [
            {"type": "divider"},
            section(f"*{env.name}* · release `{app.release}` in `{app.namespace}`"),
            section(release_lines(snapshot["releases"].get(app.key), app)),
            context(lock_line(snapshot["locks"].get(app.key))),
        ]
    # A request is shown to who may act on it (the approvers of its environment or app) and to its
    # requester; the others see only how many wait: requests may come from channels the viewer is not in.
    shown = [r for r in pending if r.where in approver_of or r.requester == viewer]
    for request in shown[:PENDING_PER_ENV]:
        blocks += _pending_blocks(request, viewer, request.where in approver_of)
    if len(shown) > PENDING_PER_ENV:
        blocks.append(context(f"…and {len(shown) - PENDING_PER_ENV} more pending in their channels."))
    if hidden := len(pending) - len(shown):
        plural = "s" if hidden != 1 else ""
        blocks.append(context(f":raised_hand: {hidden} request{plural} waiting for {env.name}'s approvers."))
    ops = snapshot["operations"].get(env.name) or []
    if ops:
        lines = "\n".join(_operation_line(op) for op in ops[:OPS_SHOWN])
        blocks.append(section(f"*Last operations*\n{lines}"))  # <= 5 clipped lines: far below 3000 chars
    return blocks


def home_view(
    environments: list[Environment],
    snapshot: Mapping[str, Any],
    *,
    viewer: str,
    approver_of: Collection[str],
    now: float,
    notice: str | None = None,
) -> dict[str, Any]:
    """The Home tab of `viewer`; `approver_of` names what they may approve: environments, and `env/app`
    for the apps of environments with several (`approvable`)."""
    blocks: Blocks = [{"type": "header", "text": {"type": "plain_text", "text": "plate-bot"}}]
    if notice:
        blocks.append(section(f":warning: {notice}"))
    blocks.append(
        context(f"Live releases as plate-bot's jobs last saw them; `/plate help` for commands. Updated {_date(now)}.")
    )
    by_env: dict[str, list[Request]] = {}
    for request in snapshot.get("pending") or []:
        by_env.setdefault(request.env, []).append(request)
    for n, env in enumerate(environments):
        more = _env_blocks(env, snapshot, viewer, approver_of, by_env.get(env.name, []))
        if len(blocks) + len(more) > MAX_BLOCKS - 1:
            rest = ", ".join(f"`{e.name}`" for e in environments[n:])
            blocks.append(context(f"No room for {rest}: use `/plate status <env>`."))
            break
        blocks += more
    return {"type": "home", "callback_id": "plate_home", "blocks": blocks}


def approvable(
    envs: list[Environment], views: list[tuple[Environment, Environment]], user: str, members: policy.Members
) -> set[str]:
    """What `user` may approve, as `Request.where` names it: environments, and `env/app` per app view."""
    out = {e.name for e in envs if policy.is_approver(e, user, members)}
    return out | {f"{e.name}/{v.app}" for e, v in views if policy.is_approver(v, user, members)}


log = logging.getLogger("plate.home")
RECENT = 900.0
MAX_VIEWERS = 25


class HomeStore(Protocol):
    def home_opened(self, user: str, now: float, *, window: float) -> None: ...
    def home_viewers(self, since: float, limit: int) -> list[str]: ...
    def home_snapshot(self, envs: list[str], keys: Sequence[str] = ...) -> dict[str, Any]: ...


class HomeSlack(Protocol):
    def members(self, group_ids: list[str]) -> dict[str, frozenset[str]]: ...
    def publish_home(self, user: str, view: dict[str, Any]) -> None: ...


class HomeTab:
    def __init__(
        self,
        config: Callable[[], PlateConfig],
        store: HomeStore,
        slack: HomeSlack,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config, self.store, self.slack, self.clock = config, store, slack, clock

    def opened(self, user: str, tab: str = "home") -> None:
        """`app_home_opened`: remember the viewer and show them the current state."""
        if tab != "home" or not user:
            return
        self.touch(user)
        self.publish([user])

    def touch(self, user: str) -> None:
        """Count `user` as a recent viewer (they opened Home, or clicked a button on it)."""
        try:
            self.store.home_opened(user, self.clock(), window=RECENT)
        except Exception:
            log.warning("could not record the Home viewer", exc_info=True)

    def show_notice(self, user: str, notice: str) -> None:
        """A click on Home has no channel to answer in: the answer goes at the top of the user's Home."""
        self.publish([user], notice=notice)

    def refresh(self) -> int:
        """Re-publish Home for the users who opened it recently; returns how many were published."""
        try:
            users = self.store.home_viewers(self.clock() - RECENT, MAX_VIEWERS)
        except Exception:
            log.warning("could not read the Home viewers", exc_info=True)
            return 0
        return self.publish(users) if users else 0

    def publish(self, users: list[str], notice: str | None = None) -> int:
        config = self.config()
        envs = list(config.environments.values())
        try:
            snapshot = self.store.home_snapshot([e.name for e in envs], release_keys(envs))
        except Exception:
            log.warning("could not read the Home data", exc_info=True)
            return 0
        views = [(e, e.for_app(a)) for e in envs for a in e.apps if len(e.apps) > 1]
        groups = sorted({g for e in envs for g in policy.groups_in(e.approvers)} | {
            g for _e, v in views for g in policy.groups_in(v.approvers)
        })  # fmt: skip
        members = self.slack.members(groups) if groups else {}
        published = 0
        for user in users:
            approver_of = approvable(envs, views, user, members)
            view: dict[str, Any] = home_view(
                envs, snapshot, viewer=user, approver_of=approver_of, now=self.clock(), notice=notice
            )
            try:
                self.slack.publish_home(user, view)
                published += 1
            except Exception as exc:  # SlackError from the adapter, or anything else: Home never fails a change
                what = getattr(exc, "code", type(exc).__name__)
                log.warning("could not publish Home (%s)", what, extra={"user": user})
        return published
