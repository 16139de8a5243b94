"""Is a body on /slack/events shaped like something Slack sends? Checked before Bolt sees it.

Bolt parses the body before it verifies the signature, and raises on a body it cannot parse (invalid
UTF-8, a `payload` that is not JSON, `"actions": null`): the server would answer 500, signed or not.
This mirrors Bolt's own parsing (slack_bolt.request.internals.parse_body) and refuses such bodies with
a reason, so they get a 400 and reach no listener. A body that passes still needs a valid signature.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

# Payload fields Bolt and our listeners read as objects when present.
_OBJECTS = ("team", "channel", "container", "message", "view", "enterprise", "event", "state", "authorizations")


def malformed(raw: bytes, content_type: str | None) -> str | None:
    """Why `raw` is not a Slack request body we can hand to Bolt, or None when it is fine."""
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "the body is not UTF-8"
    if not body:
        return None
    if content_type == "application/json" or body.startswith("{"):
        data = _json(body)
    elif "payload" in body:
        payload = dict(parse_qsl(body, keep_blank_values=True)).get("payload")
        if payload is None:
            return None
        data = _json(payload)
    else:
        return None  # a slash command's form fields: plain strings, nothing to parse
    if not isinstance(data, dict):
        return "the payload is not a JSON object"
    return _shape(data)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _shape(data: dict[str, Any]) -> str | None:
    for key in _OBJECTS:
        if data.get(key) is not None and not isinstance(data[key], dict | list):
            return f"`{key}` is not an object"
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
