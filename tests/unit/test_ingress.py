"""bot.ingress: which /slack/events bodies may reach Bolt (table-driven, no I/O)."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from bot.ingress import malformed

FORM = "application/x-www-form-urlencoded"


def payload(obj: object) -> bytes:
    return urlencode({"payload": obj if isinstance(obj, str) else json.dumps(obj)}).encode()


CLICK = {
    "type": "block_actions",
    "user": {"id": "U0ALICE"},
    "team": {"id": "T0FAKE"},
    "channel": {"id": "C0DEPLOYS"},
    "container": {"type": "message"},
    "message": {"ts": "1.0"},
    "actions": [{"action_id": "plate_approve", "value": "abc"}],
    "response_url": "https://hooks.slack.com/x",
    "trigger_id": "1.2.3",
    "enterprise": None,
}


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"", FORM),
        (urlencode({"command": "/plate", "text": "deploy prod", "user_id": "U1"}).encode(), FORM),
        (urlencode({"command": "/plate", "text": '{"not": "json"}'}).encode(), FORM),  # text is just text
        (payload(CLICK), FORM),
        (payload({**CLICK, "user": "U0ALICE"}), FORM),  # Bolt accepts a bare user id too
        (payload({"type": "view_submission", "view": {"id": "V1"}, "user": {"id": "U1"}}), FORM),
        (json.dumps({"type": "url_verification", "challenge": "c"}).encode(), "application/json"),
        (
            json.dumps({"type": "event_callback", "event": {"type": "app_home_opened"}, "authorizations": []}).encode(),
            "application/json",
        ),
    ],
)
def test_bodies_slack_sends_pass(raw: bytes, content_type: str) -> None:
    assert malformed(raw, content_type) is None


@pytest.mark.parametrize(
    ("raw", "content_type", "reason"),
    [
        (b"payload=%7B\xff", FORM, "the body is not UTF-8"),
        (payload("{not json"), FORM, "the payload is not a JSON object"),
        (payload("[1, 2]"), FORM, "the payload is not a JSON object"),
        (payload('"block_actions"'), FORM, "the payload is not a JSON object"),
        (payload("null"), FORM, "the payload is not a JSON object"),
        (payload({**CLICK, "actions": None}), FORM, "`actions` is not a list of objects"),
        (payload({**CLICK, "actions": []}), FORM, "`actions` is not a list of objects"),
        (payload({**CLICK, "actions": ["plate_approve"]}), FORM, "`actions` is not a list of objects"),
        (payload({**CLICK, "actions": {"action_id": "x"}}), FORM, "`actions` is not a list of objects"),
        (payload({**CLICK, "user": 7}), FORM, "`user` is not an object"),
        (payload({**CLICK, "channel": "C0DEPLOYS"}), FORM, "`channel` is not an object"),
        (payload({**CLICK, "type": ["block_actions"]}), FORM, "`type` is not a string"),
        (payload({**CLICK, "response_url": 5}), FORM, "`response_url` is not a string"),
        (b'{"type": "event_callback", ', "application/json", "the payload is not a JSON object"),
        (b"[1]", "application/json", "the payload is not a JSON object"),
        (b'{"event": "x"}', FORM, "`event` is not an object"),  # a leading { is JSON to Bolt
    ],
)
def test_bodies_bolt_would_choke_on_are_refused(raw: bytes, content_type: str, reason: str) -> None:
    assert malformed(raw, content_type) == reason
