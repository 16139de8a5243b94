"""core.requests: the Request state machine, with time passed in."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import Conflict, NotAllowed
from core.requests import Request, Status, Vote, already_decided, new_request

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
TTL = 900  # expires 22:28 UTC
REQUESTER, ALICE, CAROL, MALLORY = "U0BOB", "U0ALICE", "U0CAROL", "U0MALLORY"


def make(required: int = 1, **kw: object) -> Request:
    return new_request(
        "r1",
        verb="deploy",
        env="prod",
        requester=REQUESTER,
        channel="C0DEPLOYS",
        now=T0,
        ttl=TTL,
        approvals_required=required,
        args={"image_tag": "1.2.3"},
        **kw,  # type: ignore[arg-type]
    )


def test_new_request_fields() -> None:
    r = make(2, notes=("freeze",))
    assert (r.status, r.created_at, r.expires_at, r.approvals) == (Status.PENDING, T0, T0 + TTL, ())
    assert r.approvals_required == 2 and r.notes == ("freeze",) and r.args == {"image_tag": "1.2.3"}
    assert r.decided_by is None and r.decided_at is None and r.message_ts is None
    assert r.needs_approval() and not make(0).needs_approval()


def test_new_request_copies_args() -> None:
    args = {"revision": 3}
    r = new_request(
        "r2",
        verb="rollback",
        env="stg",
        requester=REQUESTER,
        channel="C1",
        now=T0,
        ttl=60,
        approvals_required=0,
        args=args,
    )
    args["revision"] = 99
    assert r.args == {"revision": 3}


@pytest.mark.parametrize(("rid", "job"), [("r1", "plate-r1"), ("01HZX", "plate-01HZX"), ("", "plate-")])
def test_job_id_derived_from_id(rid: str, job: str) -> None:
    assert make().evolve(id=rid).job_id == job


def test_requester_cannot_approve_even_if_approver() -> None:
    with pytest.raises(NotAllowed, match="cannot approve your own request"):
        make().with_approval(REQUESTER, T0 + 1, is_approver=True)


def test_non_approver_cannot_approve() -> None:
    with pytest.raises(NotAllowed, match="not an approver for `prod`"):
        make().with_approval(MALLORY, T0 + 1, is_approver=False)


def test_single_approval_decides() -> None:
    r = make().with_approval(ALICE, T0 + 5, is_approver=True)
    assert r.status is Status.APPROVED
    assert (r.decided_by, r.decided_at) == (ALICE, T0 + 5)
    assert r.approvals == (Vote(user=ALICE, at=T0 + 5),)


def test_transitions_do_not_mutate() -> None:
    r = make()
    r.with_approval(ALICE, T0 + 5, is_approver=True)
    assert r.status is Status.PENDING and r.approvals == ()


def test_two_of_m() -> None:
    r = make(2)
    r1 = r.with_approval(ALICE, T0 + 1, is_approver=True)
    assert r1.status is Status.PENDING and r1.decided_by is None
    assert r1.approvals == (Vote(user=ALICE, at=T0 + 1),)
    with pytest.raises(Conflict, match=r"You already approved this; it needs 1 more\."):
        r1.with_approval(ALICE, T0 + 2, is_approver=True)
    r2 = r1.with_approval(CAROL, T0 + 3, is_approver=True)
    assert r2.status is Status.APPROVED
    assert (r2.decided_by, r2.decided_at) == (CAROL, T0 + 3)
    assert [v.user for v in r2.approvals] == [ALICE, CAROL]


def test_three_required_needs_three_distinct() -> None:
    r = make(3)
    for i, user in enumerate([ALICE, CAROL]):
        r = r.with_approval(user, T0 + i, is_approver=True)
        assert r.status is Status.PENDING
    with pytest.raises(Conflict, match="needs 1 more"):
        r.with_approval(CAROL, T0 + 3, is_approver=True)
    r = r.with_approval("U0DAVE", T0 + 4, is_approver=True)
    assert r.status is Status.APPROVED and len(r.approvals) == 3


def test_reject_by_approver() -> None:
    r = make().with_rejection(ALICE, T0 + 9, is_approver=True, reason="not now")
    assert (r.status, r.decided_by, r.decided_at, r.reason) == (Status.REJECTED, ALICE, T0 + 9, "not now")


def test_reject_by_non_approver_refused() -> None:
    with pytest.raises(NotAllowed, match=r"Only approvers for `prod` can reject; the requester can Cancel."):
        make().with_rejection(MALLORY, T0 + 1, is_approver=False)


def test_cancel_by_requester() -> None:
    r = make(2).with_approval(ALICE, T0 + 1, is_approver=True).with_cancel(REQUESTER, T0 + 2)
    assert (r.status, r.decided_by, r.decided_at) == (Status.CANCELLED, REQUESTER, T0 + 2)


@pytest.mark.parametrize("user", [ALICE, MALLORY])
def test_cancel_by_others_refused(user: str) -> None:
    with pytest.raises(NotAllowed, match=f"Only <@{REQUESTER}>, who asked, can cancel"):
        make().with_cancel(user, T0 + 1)


@pytest.mark.parametrize(
    ("now", "expired"), [(T0, False), (T0 + TTL - 0.001, False), (T0 + TTL, True), (T0 + 10 * TTL, True)]
)
def test_is_expired_boundary(now: float, expired: bool) -> None:
    assert make().is_expired(now) is expired


def test_final_request_is_never_expired() -> None:
    r = make().with_approval(ALICE, T0 + 1, is_approver=True)
    assert not r.is_expired(T0 + 10 * TTL)


def test_with_expiry() -> None:
    r = make().with_expiry(T0 + TTL + 60)
    assert r.status is Status.EXPIRED
    assert r.decided_at == T0 + TTL and r.decided_by is None
    with pytest.raises(Conflict, match="has not expired"):
        make().with_expiry(T0 + 1)


CLICKS = [
    ("approve", lambda r, now: r.with_approval(ALICE, now, is_approver=True)),
    ("reject", lambda r, now: r.with_rejection(ALICE, now, is_approver=True)),
    ("cancel", lambda r, now: r.with_cancel(REQUESTER, now)),
]


@pytest.mark.parametrize(("name", "click"), CLICKS, ids=[c[0] for c in CLICKS])
def test_clicks_after_expiry_conflict(name: str, click: object) -> None:
    with pytest.raises(Conflict, match=r"This request expired 22:28 UTC; nothing was run. Request it again."):
        click(make(), T0 + TTL)  # type: ignore[operator]


def _final_states() -> list[tuple[Request, str]]:
    base = make()
    return [
        (base.with_approval(ALICE, T0 + 1, is_approver=True), f"This request was already approved by <@{ALICE}>."),
        (make(0).queued_now(T0 + 1), "This request was already queued."),
        (base.with_rejection(CAROL, T0 + 1, is_approver=True), f"This request was already rejected by <@{CAROL}>."),
        (base.with_cancel(REQUESTER, T0 + 1), f"This request was already cancelled by <@{REQUESTER}>."),
        (base.with_expiry(T0 + TTL), "This request was already expired."),
    ]


@pytest.mark.parametrize(("name", "click"), CLICKS, ids=[c[0] for c in CLICKS])
@pytest.mark.parametrize("final", range(5))
def test_final_states_refuse_every_transition(final: int, name: str, click: object) -> None:
    request, message = _final_states()[final]
    assert request.status.final
    assert already_decided(request) == message
    with pytest.raises(Conflict) as info:
        click(request, T0 + 2)  # type: ignore[operator]
    assert info.value.message == message


def test_final_state_checked_before_expiry() -> None:
    r = make().with_rejection(ALICE, T0 + 1, is_approver=True)
    with pytest.raises(Conflict, match="already rejected"):
        r.with_cancel(REQUESTER, T0 + 10 * TTL)
    with pytest.raises(Conflict, match="has not expired"):
        r.with_expiry(T0 + 10 * TTL)


def test_policy_checked_after_open_check() -> None:
    # A late click from a non-approver still learns that the request is closed, not that it is unauthorised.
    with pytest.raises(Conflict):
        make().with_approval(MALLORY, T0 + TTL, is_approver=False)


def test_queued_now() -> None:
    r = make(0).queued_now(T0 + 3)
    assert (r.status, r.decided_at, r.decided_by, r.approvals) == (Status.APPROVED, T0 + 3, None, ())


def test_with_message() -> None:
    r = make().with_message("1700000000.000100")
    assert r.message_ts == "1700000000.000100" and r.status is Status.PENDING


@pytest.mark.parametrize(
    ("status", "final"),
    [
        (Status.PENDING, False),
        (Status.APPROVED, True),
        (Status.REJECTED, True),
        (Status.CANCELLED, True),
        (Status.EXPIRED, True),
    ],
)
def test_status_final(status: Status, final: bool) -> None:
    assert status.final is final


def test_storage_round_trip_concrete() -> None:
    r = make(2, notes=("change freeze", "second")).with_approval(ALICE, T0 + 1.5, is_approver=True)
    r = r.with_message("123.456")
    raw = r.for_storage()
    assert '"status":"pending"' in raw and " " not in raw.replace("change freeze", "")
    back = Request.from_storage(raw)
    assert back == r
    assert isinstance(back.status, Status) and isinstance(back.approvals, tuple)
    assert isinstance(back.approvals[0], Vote) and isinstance(back.notes, tuple)
    assert Request.from_storage(raw.encode()) == r


USERS = st.from_regex(r"[UW][A-Z0-9]{2,10}", fullmatch=True)
TIMES = st.floats(min_value=0, max_value=4e9, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(
    requester=USERS,
    approvers=st.lists(USERS, max_size=4, unique=True),
    now=TIMES,
    ttl=st.integers(1, 86400),
    required=st.integers(0, 5),
    step=TIMES,
    args=st.dictionaries(
        st.sampled_from(["image_tag", "revision", "dry_run"]),
        st.one_of(st.text(max_size=20), st.integers(-10, 10**7), st.booleans()),
    ),
    notes=st.lists(st.text(max_size=30), max_size=3).map(tuple),
    final=st.sampled_from(["none", "reject", "cancel", "expire"]),
)
def test_storage_round_trip_property(
    requester: str,
    approvers: list[str],
    now: float,
    ttl: int,
    required: int,
    step: float,
    args: dict,
    notes: tuple,
    final: str,
) -> None:
    r = new_request(
        "rid",
        verb="deploy",
        env="prod",
        requester=requester,
        channel="C0X",
        now=now,
        ttl=ttl,
        approvals_required=required,
        args=args,
        notes=notes,
    )
    later = now + min(step, ttl - 1) if ttl > 1 else now
    for user in approvers:
        if user == requester or r.status.final or r.is_expired(later):
            break
        r = r.with_approval(user, later, is_approver=True)
    if not r.status.final:
        if final == "reject":
            r = r.with_rejection("U0REJECT", now, is_approver=True, reason="no")
        elif final == "cancel":
            r = r.with_cancel(requester, now)
        elif final == "expire":
            r = r.with_expiry(now + ttl)
    assert Request.from_storage(r.for_storage()) == r
    assert len({v.user for v in r.approvals}) == len(r.approvals)
    assert requester not in {v.user for v in r.approvals}
    if r.status is Status.APPROVED:
        assert len(r.approvals) >= required


# --- planning (deploys that need approval are planned first) ---------------------------------------------


def test_unplanned_request_refuses_approval_until_planned() -> None:
    r = make(planned=False)
    assert r.planned is False and r.plan_digest is None
    with pytest.raises(Conflict, match="The plan is still being computed"):
        r.with_approval(ALICE, T0 + 1, is_approver=True)
    with pytest.raises(NotAllowed, match="cannot approve your own request"):
        r.with_approval(REQUESTER, T0 + 1, is_approver=True)
    planned = r.with_plan("sha256:feed", ["1 changed"])
    assert (planned.planned, planned.plan_digest, planned.plan_summary) == (True, "sha256:feed", ("1 changed",))
    assert planned.with_approval(ALICE, T0 + 2, is_approver=True).status is Status.APPROVED


def test_unplanned_request_can_still_be_rejected_or_cancelled() -> None:
    assert make(planned=False).with_rejection(ALICE, T0 + 1, is_approver=True).status is Status.REJECTED
    assert make(planned=False).with_cancel(REQUESTER, T0 + 1).status is Status.CANCELLED


def test_nothing_to_do_closes_without_a_decider() -> None:
    r = make(planned=False).with_nothing_to_do(T0 + 4, "no changes")
    assert (r.status, r.decided_by, r.decided_at, r.reason, r.planned) == (
        Status.CANCELLED,
        None,
        T0 + 4,
        "no changes",
        True,
    )
    assert already_decided(r) == "This request was already cancelled."


@pytest.mark.parametrize("final", range(5))
def test_plan_and_nothing_to_do_refused_when_final(final: int) -> None:
    request, message = _final_states()[final]
    with pytest.raises(Conflict) as info:
        request.with_plan("d", [])
    assert info.value.message == message
    with pytest.raises(Conflict):
        request.with_nothing_to_do(T0, "x")


def test_storage_round_trip_with_plan_and_legacy_record() -> None:
    r = make(planned=False).with_plan("sha256:1", ["a", "b"])
    assert Request.from_storage(r.for_storage()) == r
    legacy = json.loads(make().for_storage())
    for key in ("planned", "plan_digest", "plan_summary", "notes"):
        legacy.pop(key)
    back = Request.from_storage(json.dumps(legacy))
    assert back.planned is True and back.plan_summary == () and back.notes == ()
