"""bot.policy: channels, requesters (`*`, users, groups), approvers via groups, approvals needed."""

from __future__ import annotations

from typing import Any

import pytest

from bot.errors import NotAllowed
from bot.grammar import Verb
from bot.policy import approvals_needed, check_request, groups_in, is_approver
from config.environments import Environment, parse_config

MEMBERS = {"S0SRE": frozenset({"U0CAROL", "U0DAVE"}), "S0DEVS": frozenset({"U0BOB"})}


def env(**overrides: Any) -> Environment:
    body = {"namespace": "plate-prod", "release": "plate-web", "chart": "c"} | overrides
    return parse_config({"environments": {"prod": body}}).environments["prod"]


OPEN = env()
LOCKED = env(
    channels=["C0DEPLOYS", "C0OPS"],
    requesters=["U0BOB", "S0SRE"],
    approvers=["U0ALICE", "S0SRE"],
    approvals_required=1,
)
MUTATING = [Verb.DEPLOY, Verb.ROLLBACK]
READS = [Verb.STATUS, Verb.HISTORY, Verb.DIAGNOSE, Verb.HARBOR_VERIFY, Verb.HELP]


@pytest.mark.parametrize("verb", list(Verb))
def test_open_environment_allows_anyone_anywhere(verb: Verb) -> None:
    assert OPEN.requesters == ["*"] and OPEN.channels == []
    check_request(OPEN, verb, "U0ANYONE", "C0RANDOM", {})


@pytest.mark.parametrize("verb", list(Verb))
def test_wrong_channel_refused_for_every_verb(verb: Verb) -> None:
    with pytest.raises(NotAllowed) as info:
        check_request(LOCKED, verb, "U0BOB", "C0RANDOM", MEMBERS)
    assert info.value.message == "Commands for `prod` are taken only in <#C0DEPLOYS>, <#C0OPS>."


@pytest.mark.parametrize(
    ("user", "allowed"),
    [("U0BOB", True), ("U0CAROL", True), ("U0DAVE", True), ("U0ALICE", False), ("U0EVE", False)],
)
@pytest.mark.parametrize("verb", MUTATING)
def test_requesters_users_and_groups(verb: Verb, user: str, allowed: bool) -> None:
    if allowed:
        check_request(LOCKED, verb, user, "C0OPS", MEMBERS)
    else:
        with pytest.raises(NotAllowed, match="not on the list of people who may request changes to `prod`"):
            check_request(LOCKED, verb, user, "C0OPS", MEMBERS)


@pytest.mark.parametrize("verb", READS)
def test_reads_need_only_the_channel(verb: Verb) -> None:
    check_request(LOCKED, verb, "U0EVE", "C0DEPLOYS", MEMBERS)


def test_group_requester_without_members_resolved_refuses() -> None:
    with pytest.raises(NotAllowed):
        check_request(LOCKED, Verb.DEPLOY, "U0CAROL", "C0OPS", {})


def test_star_requester_among_others() -> None:
    e = env(requesters=["U0BOB", "*"])
    check_request(e, Verb.DEPLOY, "U0EVE", "C0X", {})


@pytest.mark.parametrize(
    ("user", "members", "expected"),
    [
        ("U0ALICE", MEMBERS, True),
        ("U0CAROL", MEMBERS, True),
        ("U0DAVE", MEMBERS, True),
        ("U0BOB", MEMBERS, False),
        ("U0CAROL", {}, False),
        ("S0SRE", {}, True),  # the id itself is listed; harmless, users are never S…
        ("U0EVE", {"S0SRE": frozenset({"U0EVE"})}, True),
    ],
)
def test_is_approver(user: str, members: dict, expected: bool) -> None:
    assert is_approver(LOCKED, user, members) is expected


def test_no_approvers_means_nobody() -> None:
    assert not is_approver(OPEN, "U0ALICE", MEMBERS)


@pytest.mark.parametrize(
    ("required", "verb", "dry_run", "extra", "expected"),
    [
        (1, Verb.DEPLOY, False, 0, 1),
        (1, Verb.ROLLBACK, False, 0, 1),
        (2, Verb.DEPLOY, False, 0, 2),
        (1, Verb.DEPLOY, False, 1, 2),
        (0, Verb.DEPLOY, False, 0, 0),
        (0, Verb.DEPLOY, False, 1, 1),
        (1, Verb.DEPLOY, True, 0, 0),
        (2, Verb.ROLLBACK, True, 3, 0),
        (2, Verb.STATUS, False, 0, 0),
        (2, Verb.HISTORY, False, 1, 0),
        (2, Verb.DIAGNOSE, False, 0, 0),
        (2, Verb.HARBOR_VERIFY, False, 0, 0),
        (2, Verb.HELP, False, 0, 0),
    ],
)
def test_approvals_needed(required: int, verb: Verb, dry_run: bool, extra: int, expected: int) -> None:
    e = env(approvals_required=required, approvers=["U0ALICE"] if required else [])
    assert approvals_needed(e, verb, dry_run=dry_run, extra=extra) == expected


@pytest.mark.parametrize(
    ("ids", "groups"),
    [([], []), (["U0A", "W0B"], []), (["S0SRE", "U0A", "S0DEVS"], ["S0SRE", "S0DEVS"]), (["*"], [])],
)
def test_groups_in(ids: list[str], groups: list[str]) -> None:
    assert groups_in(ids) == groups
