"""Signed slash commands and clicks into the running app (waitress on loopback), a real Redis, the fake
Slack Web API; jobs drained by a real RQ worker."""

from __future__ import annotations

import contextlib
import json
import threading

from core.requests import Request, Status
from core.store import Store
from tests.conftest import Service


def _request(service: Service) -> Request:
    ids = service.wait(service.request_ids)
    assert len(ids) == 1
    request = service.runtime.store.get(ids[0])
    assert request is not None
    return request


def _card_posted(service: Service) -> Request:
    """The card is posted, its plan job runs (a real worker), and the card gets its buttons."""
    service.wait(lambda: service.slack.calls_to("chat.postMessage"))
    request = service.wait(lambda: (r := _request(service)).message_ts and r)
    if not request.planned:
        service.wait(lambda: service.runtime.queue.count == 1)
        service.run_worker()
        request = service.runtime.store.get(request.id)
        assert request.planned and request.plan_digest, service.slack.dump()
    return request


def _updates_after_plan(service: Service) -> list:
    """chat.update calls to the card made by the bot (not by the plan job's status message)."""
    card_ts = service.slack.messages("C0DEPLOYS")[0].ts
    return [c for c in service.slack.calls_to("chat.update") if c.params.get("ts") == card_ts]


def _ephemeral_texts(service: Service, user: str) -> list[str]:
    return [e["text"] if isinstance(e, dict) else e.text for e in service.slack.ephemerals(user)]


def test_deploy_prod_card_shows_what_will_run_then_the_plan_and_buttons(service: Service) -> None:
    status, body = service.command("deploy prod 1.5.0")
    assert status == 200 and body == b""
    service.wait(lambda: service.slack.calls_to("chat.postMessage"))
    first = json.dumps(service.slack.messages("C0DEPLOYS")[0].blocks)
    assert "Computing the plan" in first and "Approve" not in first and "Cancel" in first
    request = _card_posted(service)
    card = service.slack.messages("C0DEPLOYS")[0]
    assert card.ts == request.message_ts
    rendered = json.dumps(card.blocks)
    for expected in (
        "U0BOB",
        "plate-prod",
        "plate-web",
        "1.5.0",
        "Approve",
        "Reject",
        "Cancel",
        "expires",
        request.plan_digest[:12],
        "First install",
        "Deployment/plate-web",
    ):
        assert expected in rendered
    assert request.status is Status.PENDING and request.approvals_required == 1
    assert service.runtime.queue.count == 0


def test_requester_and_non_approver_cannot_approve(service: Service) -> None:
    service.command("deploy prod")
    request = _card_posted(service)
    assert service.click("plate_approve", request.id, user="U0BOB") == 200
    assert service.click("plate_approve", request.id, user="U0EVE") == 200
    service.wait(lambda: len(_ephemeral_texts(service, "U0BOB")) and len(_ephemeral_texts(service, "U0EVE")))
    assert "cannot approve your own request" in _ephemeral_texts(service, "U0BOB")[0]
    assert "not an approver" in _ephemeral_texts(service, "U0EVE")[0]
    assert service.runtime.store.get(request.id).status is Status.PENDING
    assert service.runtime.queue.count == 0
    assert "Approve" in json.dumps(service.slack.messages("C0DEPLOYS")[0].blocks)


def test_approval_by_group_member_edits_card_and_queues_one_job(service: Service) -> None:
    service.command("deploy prod")
    request = _card_posted(service)
    assert service.click("plate_approve", request.id, user="U0CAROL") == 200  # member of S0SRE
    service.wait(lambda: "Approved by" in json.dumps(service.slack.messages("C0DEPLOYS")[0].blocks))
    card = service.slack.messages("C0DEPLOYS")[0]
    assert "Approved by <@U0CAROL>" in json.dumps(card.blocks)
    assert "actions" not in [b["type"] for b in card.blocks]
    assert service.runtime.queue.job_ids == [request.job_id]
    holder = service.runtime.store.lock_holder("prod")
    assert holder is not None and holder["request"] == request.id


def test_fifty_concurrent_approvals_and_retries_make_exactly_one_job(service: Service) -> None:
    service.command("deploy prod")
    request = _card_posted(service)
    users = ["U0ALICE", "U0CAROL", "U0DAVE"]
    statuses: list[int] = []

    def click(i: int) -> None:
        headers = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"} if i % 3 == 0 else None
        statuses.append(service.click("plate_approve", request.id, user=users[i % 3], headers=headers))

    threads = [threading.Thread(target=click, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 50
    service.wait(lambda: service.runtime.store.get(request.id).status is Status.APPROVED)

    def approved_edits() -> list:
        return [c for c in _updates_after_plan(service) if "Approved by" in json.dumps(c.params)]

    # Every click is answered after the ack: the winner by editing the card, the 49 others ephemerally.
    service.wait(lambda: len(service.slack.ephemerals()) >= 49 and approved_edits(), timeout=20)
    assert service.runtime.queue.job_ids == [request.job_id]
    approved = service.runtime.store.get(request.id)
    assert len(approved.approvals) == 1
    assert len(approved_edits()) == 1 and len(service.slack.ephemerals()) == 49


def test_reject_and_later_clicks_are_told_it_was_rejected(service: Service) -> None:
    service.command("deploy prod")
    request = _card_posted(service)
    service.click("plate_reject", request.id, user="U0ALICE")
    service.wait(lambda: "Rejected" in json.dumps(service.slack.messages("C0DEPLOYS")[0].blocks))
    assert "Rejected by <@U0ALICE>" in json.dumps(service.slack.messages("C0DEPLOYS")[0].blocks)
    service.click("plate_approve", request.id, user="U0CAROL")
    service.wait(lambda: _ephemeral_texts(service, "U0CAROL"))
    assert "already rejected" in _ephemeral_texts(service, "U0CAROL")[0]
    assert service.runtime.queue.count == 0
    assert service.runtime.store.lock_holder("prod") is None


def test_only_the_requester_can_cancel(service: Service) -> None:
    service.command("deploy prod")
    request = _card_posted(service)
    service.click("plate_cancel", request.id, user="U0ALICE")
    service.wait(lambda: _ephemeral_texts(service, "U0ALICE"))
    assert "Only <@U0BOB>" in _ephemeral_texts(service, "U0ALICE")[0]
    service.click("plate_cancel", request.id, user="U0BOB")
    service.wait(lambda: "Cancelled" in json.dumps(service.slack.messages("C0DEPLOYS")[0].blocks))
    assert "Cancelled by <@U0BOB>" in json.dumps(service.slack.messages("C0DEPLOYS")[0].blocks)
    assert service.runtime.store.get(request.id).status is Status.CANCELLED


def test_expiry_edits_the_card_and_refuses_later_clicks(service: Service) -> None:
    service.command("deploy prod")
    request = _card_posted(service)
    listeners = service.runtime.listeners
    listeners.services.clock = lambda: request.expires_at + 1  # the sweeper's clock is injectable, not patched
    assert listeners.expire_due() == 1
    assert service.runtime.store.get(request.id).status is Status.EXPIRED
    assert "Expired" in json.dumps(service.slack.messages("C0DEPLOYS")[0].blocks)
    service.click("plate_approve", request.id, user="U0ALICE")
    service.wait(lambda: _ephemeral_texts(service, "U0ALICE"))
    assert "already expired" in _ephemeral_texts(service, "U0ALICE")[0]
    assert service.runtime.queue.count == 0


def test_lock_contention_tells_who_holds_the_environment(service: Service) -> None:
    service.command("deploy prod")
    first = _card_posted(service)
    service.click("plate_approve", first.id, user="U0ALICE")
    service.wait(lambda: service.runtime.store.lock_holder("prod"))
    status, body = service.command("rollback prod 3", user="U0DAVE")
    assert status == 200
    text = body.decode()
    assert "busy" in text and "U0BOB" in text and "deploy" in text
    assert len(service.request_ids()) == 1


def test_stg_needs_no_approval_and_queues_at_once(service: Service) -> None:
    service.command("deploy stg 1.5.1")
    service.wait(lambda: service.runtime.queue.count == 1)
    request = _request(service)
    assert request.status is Status.APPROVED and request.approvals_required == 0
    service.wait(lambda: "no approval needed" in json.dumps(service.slack.messages("C0DEPLOYS")[0].blocks))


def test_store_transition_is_atomic_with_enqueue(redis_conn) -> None:
    from core.queue import enqueue, queue_for
    from core.requests import new_request

    store, queue = Store(redis_conn), queue_for(redis_conn)
    request = new_request(
        "r1", verb="deploy", env="prod", requester="U1", channel="C1", now=0, ttl=60, approvals_required=1
    )
    assert store.create(request, lock_env="prod") is None

    def boom(pipe, old, new):  # an enqueue that fails inside MULTI must leave nothing changed
        enqueue(queue, pipe, new, 60)
        raise RuntimeError("enqueue failed")

    with contextlib.suppress(RuntimeError):
        store.transition("r1", lambda r: r.with_approval("U2", 1, is_approver=True), lock_env="prod", on_commit=boom)
    assert store.get("r1").status is Status.PENDING
    assert store.lock_holder("prod") is None
    assert queue.count == 0


ALWAYS_FROZEN = {
    "timezone": "Asia/Seoul",
    "weekly": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "reason": "year-end freeze"}],
}


def test_freeze_puts_a_note_on_the_card_and_needs_one_more_approval(service: Service, plate_env) -> None:
    from config.environments import load_config
    from tests.conftest import write_config

    write_config(plate_env, prod={"freeze": ALWAYS_FROZEN})
    service.runtime.listeners.services.config = load_config(plate_env["config_path"])
    service.command("deploy prod 1.5.0")
    request = _card_posted(service)
    assert request.approvals_required == 2
    card = json.dumps(service.slack.messages("C0DEPLOYS")[0].blocks)
    assert "Change freeze in effect (year-end freeze)" in card and "Needs 2 approvals" in card
    service.click("plate_approve", request.id, user="U0ALICE")
    service.wait(lambda: len(service.runtime.store.get(request.id).approvals) == 1)
    assert service.runtime.store.get(request.id).status is Status.PENDING and service.runtime.queue.count == 0
    service.click("plate_approve", request.id, user="U0CAROL")
    service.wait(lambda: service.runtime.store.get(request.id).status is Status.APPROVED)
    assert service.runtime.queue.job_ids == [request.job_id]


def test_rollbacks_stay_allowed_during_a_freeze(service: Service, plate_env) -> None:
    from config.environments import load_config
    from tests.conftest import write_config

    write_config(plate_env, prod={"freeze": ALWAYS_FROZEN})
    service.runtime.listeners.services.config = load_config(plate_env["config_path"])
    service.command("rollback prod 1")
    request = service.wait(lambda: (r := _request(service)).message_ts and r)
    assert request.approvals_required == 1 and not request.notes
