"""PURE. What may pass /slack/events into Bolt: checked on the raw bytes, in this order.

1. `unverified`: the Slack signature (v0 HMAC-SHA256 over `v0:<timestamp>:<body>`) and a timestamp
   within 5 minutes. Done here, before Bolt, because slack_sdk's verifier raises on a timestamp that is
   not an integer (`now`, `1e3`), and Bolt hands that exception to the app's error handler with the
   unverified body: an unsigned request could make plate-bot POST to any `response_url` and answer 500.
   Here such a request is a 401 and nothing else.
2. `malformed`: Bolt parses the body and raises on one it cannot parse (invalid UTF-8, a `payload` that
   is not JSON, JSON nested deeper than the parser's recursion limit, `"actions": null`). This mirrors
   Bolt's own parsing (slack_bolt.request.internals.parse_body and extract_content_type), so such a
   body gets a 400 instead of a 500.
3. `unhandled`: only the kinds of request plate-bot serves reach Bolt (slash commands, `block_actions`,
   Events API callbacks). Other interaction types (`interactive_message`, `workflow_step_edit`, …) made
   Bolt's listener matching raise; they get a 404, as Bolt answers any request nobody listens for.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MAX_SKEW = 300  # seconds; Slack's own replay window
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
# Payload fields Bolt and our listeners read as objects when present.
_OBJECTS = ("team", "channel", "container", "message", "view", "enterprise", "event", "state")
INTERACTIONS = frozenset({"block_actions"})  # the `payload=` types plate-bot listens for
EVENTS = frozenset({"event_callback", "url_verification"})  # JSON bodies of the Events API it takes


def unverified(secret: str, raw: bytes, timestamp: str | None, signature: str | None, now: float) -> str | None:
    """Why this request cannot be shown to come from Slack, or None when its signature holds."""
    if not secret:
        return "no signing secret is configured"
    if not timestamp or not _TIMESTAMP.fullmatch(timestamp):
        return "missing or malformed timestamp"
    if abs(now - int(timestamp)) > MAX_SKEW:
        return "timestamp outside the replay window"
    if not signature or not _SIGNATURE.fullmatch(signature):
        return "missing or malformed signature"
    mac = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256)
    if not hmac.compare_digest("v0=" + mac.hexdigest(), signature):
        return "signature mismatch"
    return None


def parse(raw: bytes, content_type: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """The body as Bolt will see it, or the reason it cannot be parsed (a 400)."""
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "the body is not UTF-8"
    if not body:
        return {}, None
    media = content_type.split(";")[0] if content_type else None  # exactly Bolt's extract_content_type
    if media == "application/json" or body.startswith("{"):
        data = _json(body)
    elif "payload" in body:
        payload = dict(parse_qsl(body, keep_blank_values=True)).get("payload")
        if payload is None:
            return {}, None
        data = _json(payload)
    else:
        return dict(parse_qsl(body, keep_blank_values=True)), None  # a slash command's form fields
    if not isinstance(data, dict):
        return None, "the payload is not a JSON object"
    reason = _shape(data)
    return (None, reason) if reason else (data, None)


def malformed(raw: bytes, content_type: str | None) -> str | None:
    """Why `raw` is not a Slack request body Bolt can parse, or None when it is fine."""
    return parse(raw, content_type)[1]


def unhandled(data: dict[str, Any]) -> str | None:
    """Why a parsed body is not a kind of request plate-bot serves (a 404), or None."""
    if not data:
        return "empty request"
    kind = data.get("type")
    if "command" in data and kind is None:
        return None  # a slash command; Bolt answers 404 itself for a command that is not ours
    if "ssl_check" in data and kind is None:
        return None  # Slack's certificate check, answered by Bolt
    if kind in EVENTS and "actions" not in data:
        return None
    if kind in INTERACTIONS and "actions" in data:
        return None
    return f"plate-bot does not handle `{str(kind)[:40]}` requests"


def slack_url(url: str, api_url: str) -> bool:
    """Is `url` one of Slack's response URLs (https://hooks.slack.com/…), or on the host of the configured
    Web API (a loopback stand-in in tests and the demo)? Nothing else is ever POSTed to."""
    try:
        parts, api = urlsplit(url), urlsplit(api_url)
    except ValueError:
        return False
    if parts.scheme == "https" and parts.hostname == "hooks.slack.com" and parts.port in (None, 443):
        return True
    return bool(parts.hostname) and (parts.scheme, parts.netloc) == (api.scheme, api.netloc)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        return None


def _shape(data: dict[str, Any]) -> str | None:
    for key in _OBJECTS:
        if data.get(key) is not None and not isinstance(data[key], dict):
            return f"`{key}` is not an object"
    authorizations = data.get("authorizations")
    if authorizations is not None and not (
        isinstance(authorizations, list) and all(isinstance(a, dict) for a in authorizations)
    ):
        return "`authorizations` is not a list of objects"
    user = data.get("user")
    if user is not None and not isinstance(user, dict | str):
        return "`user` is not an object"
    if "actions" in data:
        actions = data["actions"]
        if not isinstance(actions, list) or not actions or not all(isinstance(a, dict) for a in actions):
            return "`actions` is not a list of objects"  # Bolt reads actions[0]
    for key in ("type", "callback_id", "trigger_id", "response_url", "token", "api_app_id"):
        if data.get(key) is not None and not isinstance(data[key], str):
            return f"`{key}` is not a string"
    return None
