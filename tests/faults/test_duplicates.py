"""Slack delivers the same command or click again (it retries when an answer is late, with
X-Slack-Retry-Num; or a replica got the first copy). Each must have exactly one effect."""

from __future__ import annotations

import json
import threading

import pytest

from core.requests import Request, Status
from sandbox.signing import action_body, post, sign, slash_body
from tests.conftest import SIGNING_SECRET, Service
from tests.faults.conftest import ephemeral_texts, running_service
from tests.waiting import wait_until

pytestmark = pytest.mark.faults
RETRY = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}


def _command(service: Service, text: str, trigger: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    body = slash_body(
        text, user="U0BOB", trigger_id=trigger, response_url=service.slack.response_url("U0BOB", user="U0BOB")
    )
    status, _h, data = post(service.url, body, {**sign(SIGNING_SECRET, body), **(headers or {})})
    return status, data


def _only(service: Service) -> Request | None:
    ids = service.request_ids()
    return service.runtime.store.get(ids[0]) if len(ids) == 1 else None


def test_redelivered_command_makes_one_request_one_card_one_job(service: Service) -> None:
    """`/plate deploy stg` delivered, then redelivered by Slack (same trigger_id, X-Slack-Retry-Num): one
    request, one card, one job; the retry is acked silently (no second answer to the user)."""
    assert _command(service, "deploy stg 1.5.0", "trig-dup")[0] == 200
    wait_until(lambda: service.runtime.queue.count == 1, 20, "the stg job")
    status, data = _command(service, "deploy stg 1.5.0", "trig-dup", RETRY)
    assert status == 200 and data == b""
    wait_until(lambda: (r := _only(service)) and r.message_ts and r.status is Status.APPROVED, 20, "the queued card")
    assert len(service.request_ids()) == 1
    assert service.slack.calls_to("chat.update") == []  # posted once in its final state, never edited
    assert service.runtime.queue.count == 1
    assert len([m for m in service.slack.messages("C0DEPLOYS") if not m.thread_ts]) == 1
    assert service.slack.ephemerals("U0BOB") == []


def test_command_delivered_to_two_replicas_at_once_has_one_effect(service: Service, fake_slack) -> None:
    """The same delivery hits two bot replicas concurrently (a retry racing the original): one request."""
    with running_service(fake_slack) as other:
        body = slash_body(
            "deploy stg 1.5.0",
            user="U0BOB",
            trigger_id="trig-race",
            response_url=fake_slack.response_url("U0BOB", user="U0BOB"),
        )
        statuses: list[int] = []
        threads = [
            threading.Thread(
                target=lambda s=s, h=h: statuses.append(post(s.url, body, {**sign(SIGNING_SECRET, body), **h})[0])
            )
            for s, h in ((service, {}), (other, RETRY), (service, RETRY), (other, {}))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [200] * 4
        wait_until(lambda: service.runtime.queue.count == 1, 20, "the stg job")
        wait_until(lambda: (r := _only(service)) and r.message_ts and r.status is Status.APPROVED, 20, "the card")
    assert len(service.request_ids()) == 1 and service.runtime.queue.count == 1
    assert len([m for m in fake_slack.messages("C0DEPLOYS") if not m.thread_ts]) == 1


def test_redelivered_approve_click_approves_once(service: Service) -> None:
    """Alice's Approve, then Slack's retry of the same click: one approval, one job, the card edited to
    "Approved" once; the retry does not tell Alice anything confusing (no second decision)."""
    _command(service, "deploy prod 1.5.0", "trig-prod")
    wait_until(lambda: service.runtime.queue.count == 1, 20, "the plan job")
    service.run_worker()
    request = service.runtime.store.get(service.request_ids()[0])
    assert request.planned and request.status is Status.PENDING
    body = action_body(
        "plate_approve", request.id, user="U0ALICE", response_url=service.slack.response_url("U0ALICE", user="U0ALICE")
    )
    assert post(service.url, body, sign(SIGNING_SECRET, body))[0] == 200
    assert post(service.url, body, {**sign(SIGNING_SECRET, body), **RETRY})[0] == 200
    wait_until(lambda: service.runtime.queue.count == 1, 20, "the deploy job")
    wait_until(lambda: "Approved by" in json.dumps(service.slack.messages("C0DEPLOYS")[0].blocks), 20, "the card edit")
    approved = service.runtime.store.get(request.id)
    assert approved.status is Status.APPROVED and len(approved.approvals) == 1
    assert service.runtime.queue.job_ids == [request.job_id]
    card_ts = service.slack.messages("C0DEPLOYS")[0].ts
    edits = [
        c
        for c in service.slack.calls_to("chat.update")
        if c.params.get("ts") == card_ts and "Approved by" in json.dumps(c.params)
    ]
    assert len(edits) == 1
    texts = ephemeral_texts(service, "U0ALICE")
    assert all("already approved" in t for t in texts), texts
