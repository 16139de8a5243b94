"""core.progress transitions and core.messages rendering (request cards, decided cards, progress)."""

from __future__ import annotations

from typing import Any

import pytest

from config.environments import Environment, parse_config
from core.blocks import texts as block_texts
from core.messages import (
    APPROVE,
    CANCEL,
    REJECT,
    apology,
    decided_card,
    hhmm,
    job_lost,
    lock_held,
    progress_message,
    queued_reply,
    request_card,
    seconds,
    usage_reply,
)
from core.progress import Outcome, Progress, Step, StepState
from core.requests import Request, Status, new_request

T0 = 1_700_000_000.0  # 22:13:20 UTC
ENV: Environment = parse_config(
    {
        "environments": {
            "prod": {
                "namespace": "plate-prod",
                "release": "plate-web",
                "chart": "charts/plate-web",
                "approvals_required": 1,
                "approvers": ["U0ALICE"],
            }
        }
    }
).environments["prod"]


def req(required: int = 1, args: dict[str, Any] | None = None, **kw: Any) -> Request:
    return new_request(
        "r-42",
        verb="deploy",
        env="prod",
        requester="U0BOB",
        channel="C0D",
        now=T0,
        ttl=900,
        approvals_required=required,
        args={"image_tag": "1.4.2"} if args is None else args,
        **kw,
    )


def texts(blocks: list[dict[str, Any]]) -> str:
    return "\n".join(block_texts(blocks))


# --- progress -----------------------------------------------------------------------------------------


def plan() -> Progress:
    return Progress.checklist("deploy prod", [("lock", "Take the lock"), ("helm", "helm upgrade"), ("wait", "Wait")])


def test_plan_and_transitions() -> None:
    p = plan()
    assert p.outcome is Outcome.QUEUED and p.started is None
    assert [s.state for s in p.steps] == [StepState.PENDING] * 3
    p = p.start("lock", 100.0)
    assert (p.outcome, p.started) == (Outcome.RUNNING, 100.0)
    assert p.running_step() == Step("lock", "Take the lock", StepState.RUNNING, 100.0)
    p = p.done("lock", 101.5, note="held")
    assert p.step("lock").duration(999) == 1.5 and p.step("lock").note == "held"
    p = p.start("helm", 102.0)
    assert p.started == 100.0  # the job's start stays the first step's
    assert p.step("helm").duration(110.0) == 8.0  # running: measured to now
    assert p.step("wait").duration(110.0) is None
    p = p.fail("helm", 112.0, note="boom")
    assert (p.step("helm").state, p.step("helm").ended, p.step("helm").note) == (StepState.FAILED, 112.0, "boom")
    assert p.running_step() is None


def test_restart_clears_end() -> None:
    p = plan().start("helm", 1.0).fail("helm", 2.0).start("helm", 5.0)
    assert (p.step("helm").state, p.step("helm").started, p.step("helm").ended) == (StepState.RUNNING, 5.0, None)


def test_unknown_step_key() -> None:
    with pytest.raises(KeyError, match="no step 'nope' in 'deploy prod'"):
        plan().start("nope", 1.0)
    with pytest.raises(KeyError):
        plan().skip("nope")


def test_step_lookup_unknown_key_raises_key_error() -> None:
    with pytest.raises(KeyError):
        plan().step("nope")


@pytest.mark.parametrize(
    ("ok", "running_becomes", "outcome"),
    [(True, StepState.DONE, Outcome.SUCCEEDED), (False, StepState.FAILED, Outcome.FAILED)],
)
def test_finish(ok: bool, running_becomes: StepState, outcome: Outcome) -> None:
    p = plan().start("lock", 10.0).done("lock", 11.0).start("helm", 11.0)
    p = p.finish(20.0, ok=ok, summary="all done")
    assert [s.state for s in p.steps] == [StepState.DONE, running_becomes, StepState.SKIPPED]
    assert p.step("helm").ended == 20.0 and p.step("lock").ended == 11.0
    assert (p.outcome, p.ended, p.summary) == (outcome, 20.0, "all done")


def test_finish_keeps_failed_and_skipped() -> None:
    p = plan().start("lock", 1.0).fail("lock", 2.0).skip("helm", note="not reached").finish(3.0, ok=True)
    assert [s.state for s in p.steps] == [StepState.FAILED, StepState.SKIPPED, StepState.SKIPPED]
    assert p.step("helm").note == "not reached"


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "0.0s"), (2.5, "2.5s"), (59.4, "59.4s"), (60, "1m"), (90.4, "1m30s"), (3725, "1h2m5s")],
)
def test_seconds(value: float, text: str) -> None:
    assert seconds(value) == text


def test_progress_message_rendering() -> None:
    p = plan().start("lock", 100.0).done("lock", 102.5).start("helm", 102.5)
    text, blocks = progress_message(p, now=107.0)
    assert text == "deploy prod: running"
    assert blocks[0]["text"]["text"] == "*deploy prod* — running"
    assert blocks[1]["text"]["text"].splitlines() == [
        ":white_check_mark: Take the lock (2.5s)",
        ":hourglass_flowing_sand: helm upgrade (4.5s)",
        ":white_circle: Wait",
    ]
    assert len(blocks) == 2


def test_progress_message_finished_with_notes_and_summary() -> None:
    p = plan().start("lock", 0.0).done("lock", 1.0).start("helm", 1.0).fail("helm", 91.0, note="UPGRADE FAILED")
    p = p.finish(91.0, ok=False, summary="Release left at revision 4.")
    text, blocks = progress_message(p, now=500.0)
    assert text == "deploy prod: failed"
    assert blocks[0]["text"]["text"] == "*deploy prod* — failed in 1m31s"
    assert blocks[1]["text"]["text"].splitlines() == [
        ":white_check_mark: Take the lock (1.0s)",
        ":x: helm upgrade (1m30s) — UPGRADE FAILED",
        ":heavy_minus_sign: Wait",
    ]
    assert blocks[2] == {"type": "context", "elements": [{"type": "mrkdwn", "text": "Release left at revision 4."}]}


def test_progress_message_queued() -> None:
    text, blocks = progress_message(plan(), now=5.0)
    assert text == "deploy prod: queued" and blocks[0]["text"]["text"] == "*deploy prod* — queued"
    assert ":white_circle: Take the lock" in blocks[1]["text"]["text"]
    assert "(" not in blocks[1]["text"]["text"]


# --- request card ---------------------------------------------------------------------------------------


def test_request_card_buttons_carry_only_the_id() -> None:
    text, blocks = request_card(req(), ENV)
    assert text == "deploy prod requested by <@U0BOB>: needs approval"
    actions = [b for b in blocks if b["type"] == "actions"]
    assert len(actions) == 1 and actions[0]["block_id"] == "plate:r-42"
    buttons = actions[0]["elements"]
    assert [(b["action_id"], b["text"]["text"], b.get("style")) for b in buttons] == [
        (APPROVE, "Approve", "primary"),
        (REJECT, "Reject", "danger"),
        (CANCEL, "Cancel", None),
    ]
    for b in buttons:
        assert b["value"] == "r-42"
        assert set(b) <= {"type", "text", "action_id", "value", "style"}


def test_request_card_shows_what_and_expiry() -> None:
    _, blocks = request_card(req(), ENV)
    body = texts(blocks)
    assert "*deploy `prod`* requested by <@U0BOB>" in body
    for part in (
        "*Environment:* `prod`",
        "*Namespace:* `plate-prod`",
        "*Release:* `plate-web`",
        "*Chart:* `plate-web`",
        "*Image tag:* `1.4.2`",
        "expires 22:28 UTC",
    ):
        assert part in body
    assert "Dry run" not in body and "Target revision" not in body


def test_request_card_rollback_dry_run_notes_and_votes() -> None:
    r = req(2, args={"revision": 7, "dry_run": True}, notes=("Change freeze: two approvals",))
    r = r.with_approval("U0ALICE", T0 + 1, is_approver=True)
    _, blocks = request_card(r, ENV)
    body = texts(blocks)
    assert "*deploy `prod`* (dry run) requested by <@U0BOB>" in body
    assert "*Target revision:* `7`" in body and "*Dry run:* nothing will change" in body
    assert ":warning: Change freeze: two approvals" in body
    assert "approved so far by <@U0ALICE>" in body
    assert "Image tag" not in body


@pytest.mark.parametrize(
    ("required", "voters", "expected"),
    [
        (1, [], "Needs 1 approval from approvers of `prod` (not the requester)"),
        (2, [], "Needs 2 approvals from approvers of `prod` (not the requester)"),
        (
            3,
            ["U0ALICE"],
            "Needs 2 approvals from approvers of `prod` (not the requester) "
            "· approved so far by <@U0ALICE> · expires 22:28 UTC",
        ),
        (
            3,
            ["U0ALICE", "U0CAROL"],
            "Needs 1 approval from approvers of `prod` (not the requester) "
            "· approved so far by <@U0ALICE>, <@U0CAROL> ·",
        ),
    ],
)
def test_request_card_status_line(required: int, voters: list[str], expected: str) -> None:
    r = req(required)
    for user in voters:
        r = r.with_approval(user, T0, is_approver=True)
    _, blocks = request_card(r, ENV)
    contexts = [b for b in blocks if b["type"] == "context"]
    assert len(contexts) == 1 and expected in contexts[0]["elements"][0]["text"]


def test_request_card_while_planning_offers_only_cancel() -> None:
    r = req(1, planned=False)
    _, blocks = request_card(r, ENV)
    actions = [b for b in blocks if b["type"] == "actions"]
    assert [(b["action_id"], b["value"]) for b in actions[0]["elements"]] == [(CANCEL, "r-42")]
    assert ":hourglass_flowing_sand: Computing the plan" in texts(blocks)


def test_request_card_after_plan_shows_summary_and_all_buttons() -> None:
    r = req(1, planned=False).with_plan("sha256:abc", ["2 changed: Deployment/web, ConfigMap/web", "lint ok"])
    _, blocks = request_card(r, ENV)
    body = texts(blocks)
    assert "2 changed: Deployment/web, ConfigMap/web\nlint ok" in body
    assert "Computing the plan" not in body
    actions = next(b for b in blocks if b["type"] == "actions")["elements"]
    assert [b["action_id"] for b in actions] == [APPROVE, REJECT, CANCEL]
    assert {b["value"] for b in actions} == {"r-42"}


# --- decided card ---------------------------------------------------------------------------------------


def _decided() -> list[tuple[Request, str, str]]:
    two = (
        req(2).with_approval("U0ALICE", T0 + 60, is_approver=True).with_approval("U0CAROL", T0 + 120, is_approver=True)
    )
    return [
        (
            two,
            "approved",
            ":white_check_mark: Approved by <@U0ALICE>, <@U0CAROL> at 22:15 UTC; queued as `plate-r-42`.",
        ),
        (
            req(0).queued_now(T0 + 60),
            "approved",
            ":arrow_forward: Queued at 22:14 UTC as `plate-r-42` (no approval needed).",
        ),
        (
            req().with_rejection("U0ALICE", T0 + 60, is_approver=True),
            "rejected",
            ":no_entry: Rejected by <@U0ALICE> at 22:14 UTC. Nothing was run.",
        ),
        (
            req().with_cancel("U0BOB", T0 + 60),
            "cancelled",
            ":heavy_multiplication_x: Cancelled by <@U0BOB> at 22:14 UTC. Nothing was run.",
        ),
        (req().with_expiry(T0 + 5000), "expired", ":hourglass: Expired at 22:28 UTC without approval."),
        (
            req().with_nothing_to_do(T0 + 60, "the plan has no changes"),
            "cancelled",
            ":information_source: Closed at 22:14 UTC: the plan has no changes. Nothing was run.",
        ),
    ]


@pytest.mark.parametrize("case", range(6))
def test_decided_card(case: int) -> None:
    request, status, line = _decided()[case]
    assert request.status is Status(status)
    text, blocks = decided_card(request, ENV)
    if request.status is not Status.APPROVED:
        assert text == f"deploy prod: {status}"
    elif request.needs_approval():  # the notification names who approved; "queued by" when nobody had to
        assert text.startswith("deploy prod approved by <@") and text.endswith(": queued"), text
    else:
        assert text == "deploy prod queued by <@U0BOB>" and "approved" not in text
    assert all(b["type"] != "actions" for b in blocks)
    assert blocks[-1]["type"] == "context" and line in blocks[-1]["elements"][0]["text"]
    assert "*Image tag:* `1.4.2`" in texts(blocks)


def test_decided_card_shows_plan_summary() -> None:
    r = req().with_plan("d", ["1 changed"]).with_approval("U0ALICE", T0 + 1, is_approver=True)
    _, blocks = decided_card(r, ENV)
    assert "1 changed" in texts(blocks) and all(b["type"] != "actions" for b in blocks)


def test_decided_card_for_pending_is_the_request_card() -> None:
    assert decided_card(req(), ENV) == request_card(req(), ENV)


# --- short replies --------------------------------------------------------------------------------------


def test_short_replies() -> None:
    assert hhmm(T0) == "22:13 UTC"
    assert usage_reply("Bad.", "HELP") == ":warning: Bad.\n\nHELP"
    assert "`E-123`" in apology("E-123") and "nothing was changed" in apology("E-123")
    assert queued_reply(req()) == ":inbox_tray: `deploy prod` is queued; follow it in the thread."
    assert lock_held("prod", {"verb": "rollback", "user": "U0BOB", "state": "running", "since": T0}) == (
        ":lock: `prod` is busy: rollback requested by <@U0BOB> is running since 22:13 UTC. "
        "Try again when it has finished."
    )
    assert lock_held("prod", {"user": "U0BOB"}).startswith(":lock: `prod` is busy: a change requested by <@U0BOB>")
    assert job_lost("plate-r-42", "").endswith("check it with `/plate status`.")
