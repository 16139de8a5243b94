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


# --- signature -------------------------------------------------------------------------------------------
SECRET = "s3cret-signing"


def _signed(raw: bytes, ts: str) -> str:
    import hashlib
    import hmac

    return "v0=" + hmac.new(SECRET.encode(), b"v0:" + ts.encode() + b":" + raw, hashlib.sha256).hexdigest()


def test_a_correct_signature_within_five_minutes_verifies() -> None:
    from bot.ingress import unverified

    raw = b"command=%2Fplate&text=status"
    assert unverified(SECRET, raw, "1000", _signed(raw, "1000"), now=1000 + 299) is None
    assert unverified(SECRET, raw, "1000", _signed(raw, "1000"), now=1000 - 299) is None


@pytest.mark.parametrize(
    ("ts", "signature", "now", "reason"),
    [
        ("now", None, 1000, "missing or malformed timestamp"),
        ("", None, 1000, "missing or malformed timestamp"),
        (None, None, 1000, "missing or malformed timestamp"),
        ("1e3", None, 1000, "missing or malformed timestamp"),
        ("\u00b2", None, 1000, "missing or malformed timestamp"),  # str.isdigit() says yes; int() says no
        ("-1000", None, 1000, "missing or malformed timestamp"),
        ("9" * 13, None, 1000, "missing or malformed timestamp"),
        ("1000", None, 1301, "timestamp outside the replay window"),
        ("1000", "", 1000, "missing or malformed signature"),
        ("1000", "v1=" + "0" * 64, 1000, "missing or malformed signature"),
        ("1000", "v0=" + "0" * 64, 1000, "signature mismatch"),
    ],
)
def test_what_does_not_verify(ts: str | None, signature: str | None, now: float, reason: str) -> None:
    from bot.ingress import unverified

    raw = b"command=%2Fplate&text=status"
    assert unverified(SECRET, raw, ts, signature if signature is not None else _signed(raw, ts or "0"), now) == reason


def test_no_secret_verifies_nothing() -> None:
    from bot.ingress import unverified

    assert unverified("", b"x", "1000", _signed(b"x", "1000"), now=1000) == "no signing secret is configured"


@pytest.mark.parametrize(
    ("body", "handled"),
    [
        ({"command": "/plate", "text": "help"}, True),
        ({"ssl_check": "1"}, True),
        ({"type": "event_callback", "event": {"type": "app_home_opened"}}, True),
        ({"type": "url_verification", "challenge": "c"}, True),
        (CLICK, True),
        ({"type": "interactive_message", "actions": [{"name": "a"}]}, False),
        ({"type": "workflow_step_edit", "callback_id": "x"}, False),
        ({"type": "view_submission", "view": {}}, False),
        ({"type": "block_actions"}, False),  # no actions: nothing to match
        ({}, False),
    ],
)
def test_only_requests_plate_bot_serves_are_handled(body: dict, handled: bool) -> None:
    from bot.ingress import unhandled

    assert (unhandled(body) is None) is handled


def test_json_nested_past_the_parser_stack_is_malformed_not_an_exception() -> None:
    deep = b'{"type": "event_callback", "event": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    assert malformed(deep, "application/json") == "the payload is not a JSON object"


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://hooks.slack.com/commands/T0/1/abc", True),
        ("https://hooks.slack.com:443/actions/T0/1/abc", True),
        ("http://hooks.slack.com/commands/T0/1/abc", False),
        ("https://hooks.slack.com.evil.example/x", False),
        ("https://evil.example/?hooks.slack.com", False),
        ("http://169.254.169.254/latest/meta-data/", False),
        ("http://127.0.0.1:8080/hooks/r", True),  # the configured (loopback) Web API's host
        ("http://127.0.0.1:9999/hooks/r", False),
        ("file:///etc/passwd", False),
        ("not a url", False),
    ],
)
def test_only_slack_response_urls_are_answered(url: str, ok: bool) -> None:
    from bot.ingress import slack_url

    assert slack_url(url, "http://127.0.0.1:8080/api/") is ok
