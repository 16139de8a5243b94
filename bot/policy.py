"""PURE. Who may ask for what, where, and who may approve it.

Slack user groups (S…) in `requesters`/`approvers` are expanded by the caller (the Slack adapter resolves
and caches them) and passed in as `members`: group id -> user ids.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.errors import NotAllowed
from bot.grammar import Verb
from config.environments import Environment

Members = Mapping[str, frozenset[str]]


def groups_in(ids: list[str]) -> list[str]:
    """The user-group ids among `ids`: what the caller must resolve before asking."""
    return [i for i in ids if i.startswith("S")]


def _matches(user: str, ids: list[str], members: Members) -> bool:
    return any(i == "*" or i == user or user in members.get(i, frozenset()) for i in ids)


def check_request(env: Environment, verb: Verb, user: str, channel: str, members: Members) -> None:
    """Raise NotAllowed unless `user` may run `verb` on `env` from `channel`."""
    if env.channels and channel not in env.channels:
        where = ", ".join(f"<#{c}>" for c in env.channels)
        raise NotAllowed(f"Commands for `{env.name}` are taken only in {where}.")
    if verb.mutating and not _matches(user, env.requesters, members):
        raise NotAllowed(f"You are not on the list of people who may request changes to `{env.name}`.")


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
