"""core.policy: channels, requesters (`*`, users, groups), approvers via groups, approvals needed."""

from __future__ import annotations

from typing import Any

import pytest

from bot.grammar import Verb
from config.environments import Environment, SlackWorkspace, parse_config
from core.errors import NotAllowed
from core.policy import approvals_needed, check_request, groups_in, is_approver

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
        with pytest.raises(NotAllowed, match="not in the `requesters` of `prod`, so you may not request changes"):
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


# --- whose requests count (Slack Connect, Enterprise Grid, other apps) -----------------------------------
def _ws(**kw: object) -> SlackWorkspace:
    return SlackWorkspace.model_validate(kw)


def test_origin_of_a_slash_command_a_click_and_an_event() -> None:
    from core.policy import Origin, origin_of

    assert origin_of({"team_id": "T01", "api_app_id": "A01", "enterprise_id": "E01", "user_id": "U01"}) == Origin(
        "T01", "E01", "A01", None
    )
    click = {"team": {"id": "T01"}, "user": {"id": "U01", "team_id": "T02"}, "enterprise": None, "api_app_id": "A01"}
    assert origin_of(click) == Origin("T01", None, "A01", "T02")
    assert origin_of({"team": "junk", "user": 5}) == Origin(None, None, None, None)


@pytest.mark.parametrize(
    ("origin", "workspace", "installed", "reason"),
    [
        (("T01", None, "A01", None), {}, "T01", None),
        (("T01", None, "A01", "T01"), {}, "T01", None),
        (("T02", None, "A01", None), {}, "T01", "another workspace (T02)"),
        ((None, None, "A01", None), {}, "T01", "another workspace (none)"),
        (("T01", None, "A01", "T09"), {}, "T01", "a user of another workspace (T09)"),
        (("T01", None, "A01", None), {}, None, "plate-bot does not know its own workspace yet"),
        (("T01", None, "A01", None), {"team_id": "T01"}, None, None),
        (("T01", None, "A02", None), {"app_id": "A01"}, "T01", "another Slack app (A02)"),
        (("T07", "E01", "A01", "T08"), {"enterprise_id": "E01"}, None, None),
        (("T07", "E02", "A01", None), {"enterprise_id": "E01"}, None, "another organisation (E02)"),
        (("T07", "E01", "A01", None), {"enterprise_id": "E01", "team_id": "T01"}, None, "another workspace (T07)"),
    ],
)
def test_foreign_origins(origin: tuple, workspace: dict, installed: str | None, reason: str | None) -> None:
    from core.policy import Origin, foreign

    assert foreign(Origin(*origin), _ws(**workspace), installed) == reason


@pytest.mark.parametrize(
    ("profile", "workspace", "reason"),
    [
        ({"team_id": "T01"}, {}, None),
        ({"team_id": "T01", "is_restricted": True}, {}, "a guest of this workspace"),
        ({"team_id": "T01", "is_ultra_restricted": True}, {}, "a guest of this workspace"),
        ({"team_id": "T01", "is_stranger": True}, {}, "from another organisation"),
        ({"team_id": "T02"}, {}, "from another workspace"),
        ({"team_id": "T01", "deleted": True}, {}, "not a person of this workspace"),
        ({}, {}, "from another workspace"),
        ({"team_id": "T01", "is_restricted": True}, {"allowed_external_users": ["U01"]}, None),
        ({"team_id": "T05", "enterprise_user": {"enterprise_id": "E01"}}, {"enterprise_id": "E01"}, None),
        (
            {"team_id": "T05", "enterprise_user": {"enterprise_id": "E02"}},
            {"enterprise_id": "E01"},
            "from another organisation",
        ),
    ],
)
def test_outsiders_never_request_or_approve(profile: dict, workspace: dict, reason: str | None) -> None:
    from core.policy import outsider

    assert outsider("U01", profile, _ws(**workspace), "T01") == reason
