"""Hostile or broken HTTP on /slack/events: replays, forged signatures, oversized and malformed bodies,
and fuzzed commands and interaction payloads. Each is refused with a 4xx (or answered normally) and
never a 500; refused requests change nothing: no request in Redis, no job, no Slack call."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.parse
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.signing import action_body, post, sign, slash_body
from tests.conftest import SIGNING_SECRET, Service

pytestmark = pytest.mark.faults
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _send(service: Service, body: str | bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    data = body.encode() if isinstance(body, str) else body
    import urllib.request

    request = urllib.request.Request(service.url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read()


def _nothing_happened(service: Service) -> None:
    time.sleep(0.2)  # a listener that wrongly ran would have written by now (Bolt acks first)
    assert service.request_ids() == []
    assert service.runtime.queue.count == 0
    assert [c.method for c in service.slack.calls if c.method != "auth.test"] == []
    assert service.slack.hooks == []


def test_replayed_command_with_an_old_timestamp_is_refused(service: Service) -> None:
    """A captured, correctly signed request replayed 10 minutes later → 401, nothing happens."""
    body = slash_body("deploy stg 1.5.0", response_url=service.slack.response_url("r"))
    status, _ = _send(service, body, sign(SIGNING_SECRET, body, timestamp=int(time.time()) - 600))
    assert status == 401
    _nothing_happened(service)


def test_forged_signature_is_refused(service: Service) -> None:
    """Signed with another secret, or a valid signature over a different body → 401, nothing happens."""
    body = slash_body("deploy stg 1.5.0", response_url=service.slack.response_url("r"))
    assert _send(service, body, sign("not-the-secret", body))[0] == 401
    other = slash_body("status stg", response_url=service.slack.response_url("r"))
    assert _send(service, body, sign(SIGNING_SECRET, other))[0] == 401
    unsigned = {"Content-Type": "application/x-www-form-urlencoded"}
    assert _send(service, body, unsigned)[0] == 401
    _nothing_happened(service)


def test_oversized_body_is_refused_before_parsing(service: Service) -> None:
    """A 300 KB body (Slack's are a few KB) → 413 without reading it into Bolt, even if signed."""
    body = slash_body("deploy stg " + "x" * 300_000)
    assert _send(service, body, sign(SIGNING_SECRET, body))[0] == 413
    _nothing_happened(service)


@pytest.mark.parametrize(
    "payload",
    ["{not json", "[1, 2]", '"block_actions"', "null",
     json.dumps({"type": "block_actions", "actions": None, "user": {"id": "U0ALICE"}}),
     json.dumps({"type": "block_actions", "actions": [], "user": {"id": "U0ALICE"}}),
     json.dumps({"type": "block_actions", "actions": ["plate_approve"], "user": {"id": "U0ALICE"}}),
     json.dumps({"type": "block_actions", "actions": [{"action_id": "plate_approve"}], "user": 7})],
)  # fmt: skip
def test_malformed_interaction_payload_is_a_400(service: Service, payload: str) -> None:
    """`payload=` that is not a JSON object, or whose `actions`/`user` have the wrong types: 400 (it
    was a 500: Bolt raised while parsing); unsigned, the signature is checked first: 401. Nothing happens."""
    body = urllib.parse.urlencode({"payload": payload})
    status, data = _send(service, body, sign(SIGNING_SECRET, body))
    assert status == 400, data
    assert _send(service, body, {"Content-Type": "application/x-www-form-urlencoded"})[0] == 401
    _nothing_happened(service)


def test_body_that_is_not_utf8_or_not_json_is_a_400(service: Service) -> None:
    raw = b"payload=%7B%22type%22%3A\xff\xfe"
    ts = str(int(time.time()))
    mac = hmac.new(SIGNING_SECRET.encode(), f"v0:{ts}:".encode() + raw, hashlib.sha256).hexdigest()
    headers = {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={mac}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    assert _send(service, raw, headers)[0] == 400  # signed over the raw bytes, as Slack signs
    body = '{"type": "event_callback", "event": '
    assert _send(service, body, {**sign(SIGNING_SECRET, body), "Content-Type": "application/json"})[0] == 400
    _nothing_happened(service)


def _apologies(service: Service) -> list[str]:
    """An apology means a listener raised something unexpected: a bug even if HTTP said 200."""
    return [str(h.get("text")) for _n, h in service.slack.hooks if "went wrong on my side" in str(h.get("text"))]


@FUZZ
@given(text=st.text(max_size=400))
def test_fuzzed_command_text_never_fails(service: Service, text: str) -> None:
    """Any /plate text, signed: 200 with an answer, never a 500 and never an internal-error apology."""
    body = slash_body(text, trigger_id=f"fz-{time.monotonic_ns()}", response_url=service.slack.response_url("fz"))
    status, _h, _d = post(service.url, body, sign(SIGNING_SECRET, body))
    assert status == 200
    assert _apologies(service) == []


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
_json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
_actions = st.lists(
    st.fixed_dictionaries(
        {"action_id": st.one_of(st.sampled_from(["plate_approve", "plate_reject", "plate_cancel"]), _scalars)},
        optional={"value": _json_values, "block_id": _scalars, "type": _scalars},
    ),
    max_size=2,
)
_payloads = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(["block_actions", "view_submission", "shortcut", "message_action"]), _scalars)},
    optional={
        "actions": st.one_of(_actions, _json_values),
        "user": st.one_of(st.fixed_dictionaries({"id": _scalars}), _json_values),
        "team": _json_values,
        "channel": _json_values,
        "container": _json_values,
        "message": _json_values,
        "trigger_id": _scalars,
    },
)


@FUZZ
@given(payload=_payloads)
def test_fuzzed_interaction_payloads_never_fail(service: Service, payload: dict[str, Any]) -> None:
    """Any interaction payload shape, signed: a 200, 400 or 404, never a 500 or an apology; and no
    request is ever decided by a fuzzed click (there is none to decide)."""
    payload["response_url"] = service.slack.response_url("fz")
    body = urllib.parse.urlencode({"payload": json.dumps(payload)})
    status, _h, data = post(service.url, body, sign(SIGNING_SECRET, body))
    assert status in (200, 400, 404), (status, data, payload)
    assert _apologies(service) == []


def test_unknown_action_id_is_not_a_server_error(service: Service) -> None:
    """A button plate-bot does not own (another app's, or an old card's): 404 "unhandled", no effect."""
    body = action_body("someone_elses_button", "x", user="U0ALICE", response_url=service.slack.response_url("r"))
    assert post(service.url, body, sign(SIGNING_SECRET, body))[0] == 404
    _nothing_happened(service)
