"""Slack misbehaving: 429 with Retry-After, 500s, answers that never come. The production client
(core.slack.make_client and its retry handlers) against the fake Slack Web API on loopback.

The rule (docs/reliability.md): a 429 or a 5xx means Slack did not act, so every call is retried;
a timeout is retried once too: harmless for chat.update and reads, at-least-once for chat.postMessage.
Whatever still fails is a SlackError, which every caller handles, never a raw socket exception.
"""

from __future__ import annotations

import time

import pytest

from core.slack import SlackError, SlackGateway, make_client
from sandbox.slack import FakeSlack
from tests.conftest import BOT_TOKEN, Service
from tests.faults.conftest import thread_text
from tests.waiting import wait_until

pytestmark = pytest.mark.faults
CHANNEL = "C0DEPLOYS"


def gateway(slack: FakeSlack, timeout: int = 1) -> SlackGateway:
    return SlackGateway(make_client(BOT_TOKEN, slack.api_url, timeout=timeout))


def statuses(slack: FakeSlack, method: str) -> list[int]:
    return [c.status for c in slack.calls_to(method)]


def test_429_with_retry_after_is_waited_out_and_posts_once(fake_slack: FakeSlack) -> None:
    """A 429 (Retry-After: 1) before Slack accepts: one message, posted on the second attempt, no
    earlier than the Retry-After asked."""
    fake_slack.fail_next("chat.postMessage", status=429, retry_after=1, times=1)
    started = time.monotonic()
    ts = gateway(fake_slack).post(CHANNEL, "deploy prod: running")
    assert time.monotonic() - started >= 1.0  # Retry-After honoured: not a speed check, a protocol one
    assert statuses(fake_slack, "chat.postMessage") == [429, 200]
    assert [m.ts for m in fake_slack.messages(CHANNEL)] == [ts]


def test_500s_are_retried_and_the_edit_lands_once(fake_slack: FakeSlack) -> None:
    """chat.update answered 500, then accepted: the message shows the new text, edited once."""
    slack = gateway(fake_slack)
    ts = slack.post(CHANNEL, "deploy prod: running")
    fake_slack.fail_next("chat.update", status=500, times=1)
    slack.update(CHANNEL, ts, "deploy prod: succeeded")
    assert statuses(fake_slack, "chat.update") == [500, 200]
    [message] = fake_slack.messages(CHANNEL)
    assert message.text == "deploy prod: succeeded" and message.edits == 1


def test_update_that_times_out_is_sent_again_and_ends_in_the_right_state(fake_slack: FakeSlack) -> None:
    """An edit whose answer is late (Slack applied it after our 1 s timeout) is sent again; editing is
    idempotent, so the message ends with the right text and nothing extra is posted."""
    slack = gateway(fake_slack)
    ts = slack.post(CHANNEL, "deploy prod: running")
    fake_slack.fail_next("chat.update", delay=1.5)
    slack.update(CHANNEL, ts, "deploy prod: succeeded")
    wait_until(lambda: len(fake_slack.calls_to("chat.update")) == 2, 20, "the retried edit")
    time.sleep(0.6)  # let the late first edit land as well
    messages = fake_slack.messages(CHANNEL)
    assert [m.text for m in messages] == ["deploy prod: succeeded"]


def test_post_dropped_after_a_timeout_is_posted_again_exactly_once(fake_slack: FakeSlack) -> None:
    """Slack never answered the post and did not post it (a 500 after our timeout): the retry posts it,
    so the report is not lost, and there is exactly one copy."""
    fake_slack.fail_next("chat.postMessage", status=500, delay=1.5)
    ts = gateway(fake_slack).post(CHANNEL, "deploy prod failed: helm upgrade timed out", thread_ts="1.000100")
    time.sleep(0.6)  # the late 500 arrives; it must not add anything
    thread = [m for m in fake_slack.messages(CHANNEL) if m.thread_ts == "1.000100"]
    assert [m.ts for m in thread] == [ts]


def test_post_applied_after_a_timeout_is_at_least_once(fake_slack: FakeSlack) -> None:
    """Slack posted but answered after our timeout: the retry posts again. Documented trade-off
    (at-least-once for posts): the report is never lost; at most one extra copy appears."""
    fake_slack.fail_next("chat.postMessage", delay=1.5)
    gateway(fake_slack).post(CHANNEL, "deploy prod failed")
    wait_until(lambda: len(fake_slack.messages(CHANNEL)) >= 2, 10, "the late first post")
    assert [m.text for m in fake_slack.messages(CHANNEL)] == ["deploy prod failed"] * 2


def test_failures_beyond_the_retries_are_slack_errors(fake_slack: FakeSlack) -> None:
    """Callers only handle SlackError (a failed 'ok: false' call already was one): a timeout that
    outlives its retry must become one too, not a raw socket exception escaping into a job."""
    slack = gateway(fake_slack)
    fake_slack.fail_next("chat.update", status=500, delay=1.2, times=2)
    with pytest.raises(SlackError) as timeout:
        slack.update(CHANNEL, "1.000100", "x")
    assert timeout.value.code == "timeout"
    assert fake_slack.messages(CHANNEL) == []


def test_deploy_thread_is_complete_under_slack_429s_and_500s(service: Service, cluster) -> None:
    """A whole stg deploy while Slack rate-limits the first post and fails edits: the card, the status
    message and the summary each appear once, the status message ends "succeeded", nothing is lost,
    and the user saw no error."""
    slack = service.slack
    slack.fail_next("chat.postMessage", status=429, retry_after=1, times=1)
    slack.fail_next("chat.update", status=500, times=1)
    service.command("deploy stg 1.5.0")
    service.wait(lambda: service.runtime.queue.count == 1, timeout=10)
    slack.fail_next("chat.postMessage", status=503, times=1)
    slack.fail_next("chat.update", status=429, retry_after=1, times=1)
    service.run_worker()
    text = thread_text(service)
    assert " *deploy stg* — succeeded" in text, slack.dump()
    top = [m for m in slack.messages(CHANNEL) if not m.thread_ts]
    replies = [m for m in slack.messages(CHANNEL) if m.thread_ts and m.thread_ts != m.ts]
    assert len(top) == 1
    assert [m.text.split(":")[0] for m in replies if m.text.startswith("deploy stg")] == ["deploy stg"]
    assert sum("Release `plate-web`" in m.text for m in replies) == 1
    assert {429, 500, 503} <= {c.status for c in slack.calls}
    assert slack.ephemerals() == []  # no error ever reached the user
