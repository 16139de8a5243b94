"""PURE. Who may ask for what, where, and who may approve it.

Slack user groups (S…) in `requesters`/`approvers` are expanded by the caller (the Slack adapter resolves
and caches them) and passed in as `members`: group id -> user ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from config.environments import Environment, SlackWorkspace
from core.errors import NotAllowed
from core.requests import Verb

Members = Mapping[str, frozenset[str]]


def groups_in(ids: list[str]) -> list[str]:
    """The user-group ids among `ids`: what the caller must resolve before asking."""
    return [i for i in ids if i.startswith("S")]


def _matches(user: str, ids: list[str], members: Members) -> bool:
    return any(i == "*" or i == user or user in members.get(i, frozenset()) for i in ids)


def audience(env: Environment, verb: Verb) -> list[str]:
    """Who may run `verb` on `env` (an app's view): requesters for changes, diagnosers for diagnose (it
    shows pod logs), readers for the other reads."""
    if verb.mutating:
        return env.requesters
    if verb is Verb.DIAGNOSE:
        return env.may_diagnose()
    return env.readers


def _audience_name(env: Environment, verb: Verb) -> str:
    if verb.mutating:
        return "requesters"
    return "diagnosers" if verb is Verb.DIAGNOSE and env.diagnosers is not None else "readers"


def check_request(env: Environment, verb: Verb, user: str, channel: str, members: Members) -> None:
    """Raise NotAllowed unless `user` may run `verb` on `env` from `channel`; the refusal names the list
    the user is missing from. `members` expands the groups in that list."""
    if env.channels and channel not in env.channels:
        where = ", ".join(f"<#{c}>" for c in env.channels)
        raise NotAllowed(f"Commands for `{env.name}` are taken only in {where}.")
    if not _matches(user, audience(env, verb), members):
        what = "request changes to" if verb.mutating else f"run `{verb.value}` on"
        raise NotAllowed(
            f"You are not in the `{_audience_name(env, verb)}` of `{env.label}`, so you may not {what} it."
        )


def is_approver(env: Environment, user: str, members: Members) -> bool:
    return _matches(user, env.approvers, members)


def freeze_note(env: Environment, verb: Verb, now: float) -> str | None:
    """During a freeze a deploy needs one more approval; rollbacks stay allowed (they are the remedy)."""
    if verb is not Verb.DEPLOY or env.freeze is None:
        return None
    active = env.freeze.active(now)
    if active is None:
        return None
    if not env.approvers:
        raise NotAllowed(
            f"`{env.name}` is in a change freeze ({active[0]}) and has no approvers: deploys wait until it ends."
        )
    return f"Change freeze in effect ({active[0]}): this deploy needs one more approval than usual."


def approvals_needed(env: Environment, verb: Verb, *, dry_run: bool, extra: int = 0) -> int:
    """How many people besides the requester must approve. Dry runs and reads need nobody."""
    if not verb.mutating or dry_run:
        return 0
    return env.approvals_required + extra


@dataclass(frozen=True)
class Origin:
    """Where a Slack payload says it comes from (slash command, interaction or Events API body)."""

    team: str | None
    enterprise: str | None
    app: str | None
    user_team: str | None  # the clicking user's own workspace, when the payload names it


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _id(value: Any) -> str | None:
    return _str(value.get("id")) if isinstance(value, dict) else None


def origin_of(body: Mapping[str, Any]) -> Origin:
    """Slash commands and events carry `team_id`/`enterprise_id`; interactions `team`/`enterprise` objects."""
    user = body.get("user")
    return Origin(
        team=_str(body.get("team_id")) or _id(body.get("team")),
        enterprise=_str(body.get("enterprise_id")) or _id(body.get("enterprise")),
        app=_str(body.get("api_app_id")),
        user_team=_str(user.get("team_id")) if isinstance(user, dict) else None,
    )


def foreign(origin: Origin, workspace: SlackWorkspace, installed_team: str | None) -> str | None:
    """Why a payload does not come from plate-bot's own app and workspace (or organisation), or None."""
    if workspace.app_id and origin.app != workspace.app_id:
        return f"another Slack app ({origin.app or 'none'})"
    if workspace.enterprise_id:
        if origin.enterprise != workspace.enterprise_id:
            return f"another organisation ({origin.enterprise or 'none'})"
        if workspace.team_id and origin.team != workspace.team_id:
            return f"another workspace ({origin.team or 'none'})"
        return None
    team = workspace.team_id or installed_team
    if team is None:
        return "plate-bot does not know its own workspace yet"  # auth.test has not answered: fail closed
    if origin.team != team:
        return f"another workspace ({origin.team or 'none'})"
    if origin.user_team is not None and origin.user_team != team:
        return f"a user of another workspace ({origin.user_team})"
    return None


def outsider(
    user: str, profile: Mapping[str, Any], workspace: SlackWorkspace, installed_team: str | None
) -> str | None:
    """Why `user` (their users.info record) may not request or approve changes: a guest, or someone from
    another organisation (Slack Connect). None for a full member, or one listed in allowed_external_users."""
    if user in workspace.allowed_external_users:
        return None
    if profile.get("is_stranger"):
        return "from another organisation"
    if profile.get("is_restricted") or profile.get("is_ultra_restricted"):
        return "a guest of this workspace"
    if profile.get("is_bot") or profile.get("deleted"):
        return "not a person of this workspace"
    team = profile.get("team_id")
    if workspace.enterprise_id:
        enterprise = (profile.get("enterprise_user") or {}).get("enterprise_id")
        if enterprise != workspace.enterprise_id:
            return "from another organisation"
    elif team != (workspace.team_id or installed_team):
        return "from another workspace"
    return None
