"""The audit trail's records (core.audit): pure, table-driven."""

from __future__ import annotations

import pytest

from core.audit import FIELDS, Event, args_text, entry, for_transition, line
from core.requests import PAUSE_AUTOSYNC, Request, Status, Vote, new_request


def request(verb: str = "rollback", required: int = 1, **args: object) -> Request:
    return new_request(
        "r1",
        verb=verb,
        env="prod",
        requester="U0BOB",
        channel="C1",
        now=0,
        ttl=900,
        approvals_required=required,
        args=args,
    )


def test_entry_fills_request_fields_and_drops_empty_values() -> None:
    record = entry(Event.JOB_ENDED, at=12.5, request=request(), outcome="succeeded", seconds="3.2", detail="")
    assert record == {
        "event": "job.ended",
        "at": "12.500",
        "request": "r1",
        "env": "prod",
        "verb": "rollback",
        "requester": "U0BOB",
        "outcome": "succeeded",
        "seconds": "3.2",
    }
    assert set(record) <= set(FIELDS)


@pytest.mark.parametrize("field", ["args", "password", "values"])
def test_entry_refuses_fields_that_are_not_audit_fields(field: str) -> None:
    with pytest.raises(ValueError, match="not an audit field"):
        entry(Event.JOB_STARTED, at=0, **{field: "x"})


def test_entry_is_one_bounded_line_without_secrets() -> None:
    record = entry(Event.REQUEST_REFUSED, at=0, detail="line one\nline two password=hunter2hunter2 " + "x" * 400)
    assert "\n" not in record["detail"] and len(record["detail"]) <= 300
    assert "hunter2" not in record["detail"] and "[REDACTED]" in record["detail"]
    assert len(entry(Event.REQUEST_REFUSED, at=0, user="U" * 200)["user"]) <= 80


def test_args_text() -> None:
    assert args_text({"image_tag": "1.5.0", "dry_run": True}) == "dry_run image_tag=1.5.0"
    assert args_text({}) == ""


def _events(records: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(r["event"], r.get("user", "")) for r in records]


PENDING = request()
PLANNED = PENDING.with_plan("d" * 64, ["plan"], (PAUSE_AUTOSYNC,))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (PENDING, PENDING.with_message("1.2"), []),
        (PENDING.evolve(planned=False), PLANNED, [("request.planned", "")]),
        (
            PLANNED,
            PLANNED.with_approval("U0CAROL", 1, is_approver=True),
            [("request.approved", "U0CAROL"), ("lock.taken", "U0BOB")],
        ),
        (
            PLANNED.evolve(approvals_required=2),
            PLANNED.evolve(approvals_required=2).with_approval("U0CAROL", 1, is_approver=True),
            [("request.approval", "U0CAROL")],
        ),
        (PLANNED, PLANNED.with_rejection("U0ALICE", 1, is_approver=True), [("request.rejected", "U0ALICE")]),
        (PLANNED, PLANNED.with_cancel("U0BOB", 1), [("request.cancelled", "U0BOB")]),
        (PENDING, PENDING.with_nothing_to_do(1, "revision 9 does not exist"), [("request.closed", "plate-bot")]),
        (PENDING, PENDING.with_expiry(10_000), [("request.expired", "")]),
        (request("status", 0), request("status", 0).queued_now(1), [("request.queued", "")]),
        (request("deploy", 0), request("deploy", 0).queued_now(1), [("request.queued", ""), ("lock.taken", "U0BOB")]),
        (
            request("rollback", 0, dry_run=True),
            request("rollback", 0, dry_run=True).queued_now(1),
            [("request.queued", "")],  # a dry run takes no lock
        ),
        (PLANNED.with_cancel("U0BOB", 1), PLANNED.with_cancel("U0BOB", 1), []),
    ],
)
def test_for_transition(old: Request, new: Request, expected: list[tuple[str, str]]) -> None:
    assert _events(for_transition(old, new, at=5)) == expected


def test_approval_records_the_digest_and_the_choice() -> None:
    approved = PLANNED.with_approval("U0CAROL", 1, is_approver=True, option=PAUSE_AUTOSYNC)
    record = for_transition(PLANNED, approved, at=5)[0]
    assert record["detail"] == f"approved by U0CAROL · plan {'d' * 12} · chose pause-autosync"
    closed = for_transition(PENDING, PENDING.with_nothing_to_do(1, "revision 9 does not exist"), at=5)[0]
    assert closed["detail"] == "revision 9 does not exist"


def test_line_for_the_audit_channel() -> None:
    approved = PLANNED.evolve(status=Status.APPROVED, approvals=(Vote(user="U0CAROL", at=1),), decided_by="U0CAROL")
    record = for_transition(PLANNED, approved, at=0)[0]
    assert line(record) == (
        "`1970-01-01 00:00:00 UTC` *request.approved* · rollback `prod` · by <@U0CAROL> · requested by <@U0BOB> · "
        f"approved by U0CAROL · plan {'d' * 12} · request `r1`"
    )
    ended = entry(Event.JOB_ENDED, at=0, request=PENDING, outcome="failed", seconds="4.0", detail="it `broke`")
    assert "failed in 4.0s · it 'broke'" in line(ended)
