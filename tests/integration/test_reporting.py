"""A job's thread replies through the real Slack client to the loopback Slack API: a long reply is cut
to Slack's limit only after it is redacted, so a secret sitting at the cut is never half posted."""

from __future__ import annotations

import fakeredis

from core.progress import Progress
from core.redact import REDACTOR
from core.requests import new_request
from core.slack import SlackGateway, make_client
from core.store import Store
from sandbox.slack import FakeSlack
from workers.reporting import REPLY_LIMIT, ThreadReporter

SECRET = "Zq8vL2mW9xR4tY7uP3sK6nB1"


def test_a_long_reply_is_redacted_before_it_is_cut(fake_slack: FakeSlack) -> None:
    source = ("secret", "test", "plate-prod", "app-credentials")
    REDACTOR.set(source, [SECRET])
    try:
        request = new_request(
            "0a1b2c3d4e5f", verb="deploy", env="prod", requester="U0BOB", channel="C0D", now=1.0, ttl=60,
            approvals_required=0,
        ).with_message("1700000000.000100")  # fmt: skip
        slack = SlackGateway(make_client("xoxb-test", fake_slack.api_url))
        reporter = ThreadReporter(slack, Store(fakeredis.FakeRedis()), request, Progress.checklist("deploy", []))
        cut_at = REPLY_LIMIT - 40
        head = ("pod event line; " * 200)[: cut_at - len(SECRET) // 2 - 1] + " "
        text = head + SECRET + " tail" + " more" * 100  # the secret straddles the cut
        reporter.reply(text)
        [posted] = fake_slack.calls_to("chat.postMessage")
        body = str(posted.params["text"])
        assert SECRET[: len(SECRET) // 2] not in body and SECRET not in body
        assert len(body) <= REPLY_LIMIT + 40 and "characters cut" in body
    finally:
        REDACTOR.remove(source)
