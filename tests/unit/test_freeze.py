"""Change-freeze windows: weekly and dated, in a named time zone (time passed in)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from bot.grammar import Verb
from config.environments import Environment
from config.freeze import Freeze, describe
from core.errors import NotAllowed
from core.policy import approvals_needed, freeze_note

SEOUL = ZoneInfo("Asia/Seoul")


def at(*args: int) -> float:
    return dt.datetime(*args, tzinfo=SEOUL).timestamp()


FREEZE = Freeze.model_validate(
    {
        "timezone": "Asia/Seoul",
        "weekly": [
            {"days": ["fri"], "from": "18:00", "to": "23:59", "reason": "Friday evening"},
            {"days": ["sat", "sun"], "reason": "weekend"},
            {"days": ["wed"], "from": "22:00", "to": "02:00", "reason": "batch window"},
        ],
        "dates": [{"from": "2026-12-24T00:00:00", "to": "2026-12-27T00:00:00", "reason": "holidays"}],
    }
)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (at(2026, 11, 27, 17, 59), None),  # Friday before the window
        (at(2026, 11, 27, 18, 0), "Friday evening"),
        (at(2026, 11, 27, 23, 59, 30), "Friday evening"),
        (at(2026, 11, 28, 12, 0), "weekend"),  # Saturday
        (at(2026, 11, 30, 9, 0), None),  # Monday
        (at(2026, 11, 25, 23, 0), "batch window"),  # Wednesday night
        (at(2026, 11, 26, 1, 59), "batch window"),  # past midnight, same window
        (at(2026, 11, 26, 2, 0), None),
        (at(2026, 12, 24, 9, 0), "holidays"),  # a Thursday
    ],
)
def test_active(now: float, expected: str | None) -> None:
    active = FREEZE.active(now)
    assert (active[0] if active else None) == expected


def test_active_reports_when_it_ends_and_upcoming_when_it_starts() -> None:
    reason, ends = FREEZE.active(at(2026, 11, 27, 19, 0))
    assert reason == "Friday evening" and ends == at(2026, 11, 28, 0, 0)
    reason, starts = FREEZE.upcoming(at(2026, 11, 27, 9, 0))
    assert reason == "Friday evening" and starts == at(2026, 11, 27, 18, 0)
    assert (
        describe(FREEZE, at(2026, 11, 27, 9, 0)) == "Next change freeze (Friday evening) starts Fri 27 Nov 18:00 KST."
    )
    assert "until Sat 00:00 KST" in describe(FREEZE, at(2026, 11, 27, 19, 0))
    assert describe(None, 0) is None


@pytest.mark.parametrize(
    "bad",
    [
        {"timezone": "Mars/Olympus"},
        {"weekly": [{"days": ["someday"]}]},
        {"weekly": [{"days": ["mon"], "from": "25:00"}]},
        {"dates": [{"from": "2026-12-27T00:00:00", "to": "2026-12-24T00:00:00"}]},
    ],
)
def test_invalid_freeze(bad: dict) -> None:
    with pytest.raises(ValidationError):
        Freeze.model_validate(bad)


def env(**kw: object) -> Environment:
    base = {"namespace": "plate-prod", "release": "web", "chart": "c", "approvals_required": 1, "approvers": ["U0A"]}
    return Environment.model_validate({**base, "freeze": FREEZE.model_dump(by_alias=True), **kw})


def test_freeze_adds_an_approval_to_deploys_only() -> None:
    friday_night = at(2026, 11, 27, 20, 0)
    note = freeze_note(env(), Verb.DEPLOY, friday_night)
    assert note and "Friday evening" in note
    assert approvals_needed(env(), Verb.DEPLOY, dry_run=False, extra=1) == 2
    assert freeze_note(env(), Verb.ROLLBACK, friday_night) is None
    assert freeze_note(env(), Verb.DEPLOY, at(2026, 11, 30, 9, 0)) is None


def test_frozen_environment_without_approvers_refuses_deploys() -> None:
    with pytest.raises(NotAllowed, match="change freeze"):
        freeze_note(env(approvals_required=0, approvers=[]), Verb.DEPLOY, at(2026, 11, 28, 12, 0))
