"""Build Slack requests (slash commands, button clicks, Events API) signed like Slack signs them.

Bolt rejects anything whose X-Slack-Signature does not match or whose timestamp is more than
5 minutes off, so tests and `plate-bot demo` must sign exactly the bytes they send.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

from slack_sdk.signature import SignatureVerifier

__all__ = ["action_body", "home_action_body", "home_opened_body", "post", "sign", "slash_body"]

_APP_ID = "A0PLATE"
# Slack still sends the deprecated verification token in payloads; bolt ignores it.
_VERIFICATION_TOKEN = "fakeVerificationToken"  # noqa: S105 - a placeholder, not a secret
_RESPONSE_URL = "http://127.0.0.1:9/hooks/r"  # port 9 (discard): set a FakeSlack.response_url() for real use
_TRIGGER_ID = "13345224609.738474920.8088930838d88f008e0"


def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """Headers for `body` signed with `secret`. Pass an old `timestamp` to test replay rejection.

    Content-Type follows the body: JSON (Events API) bodies get application/json, the rest
    (slash commands, interactivity payloads) application/x-www-form-urlencoded, as Slack sends them.
    """
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    is_json = body.lstrip().startswith("{")
    return {
        "Content-Type": "application/json" if is_json else "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
    }


def slash_body(
    text: str,
    *,
    user: str = "U0ALICE",
    channel: str = "C0DEPLOYS",
    command: str = "/plate",
    response_url: str = _RESPONSE_URL,
    team: str = "T0FAKE",
    trigger_id: str = _TRIGGER_ID,
    app_id: str = _APP_ID,
    enterprise: str | None = None,
) -> str:
    """Form body of a slash command invocation, with the fields Slack sends."""
    return urllib.parse.urlencode(
        {
            **({"enterprise_id": enterprise} if enterprise else {}),
            "token": _VERIFICATION_TOKEN,
            "team_id": team,
            "team_domain": "fake",
            "channel_id": channel,
            "channel_name": _channel_name(channel),
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": app_id,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id,
        }
    )


def action_body(
    action_id: str,
    value: str,
    *,
    user: str,
    channel: str = "C0DEPLOYS",
    message_ts: str = "1700000000.000100",
    response_url: str = _RESPONSE_URL,
    team: str = "T0FAKE",
    block_id: str = "plate_actions",
    user_team: str | None = None,
    app_id: str = _APP_ID,
    enterprise: str | None = None,
) -> str:
    """Form body (`payload=<json>`) of a block_actions button click on a message. `user_team` other than
    `team`: someone from another workspace clicking in a shared (Slack Connect) channel."""
    now = f"{time.time():.6f}"
    payload = {
        "type": "block_actions",
        "team": {"id": team, "domain": "fake"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": user_team or team},
        "api_app_id": app_id,
        "token": _VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "trigger_id": _TRIGGER_ID,
        "channel": {"id": channel, "name": _channel_name(channel)},
        "message": {"ts": message_ts, "text": "", "type": "message", "user": "UPLATEBOT", "blocks": []},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "value": value,
                "type": "button",
                "action_ts": now,
                "text": {"type": "plain_text", "text": action_id.replace("_", " ").title(), "emoji": True},
            }
        ],
        "is_enterprise_install": False,
        "enterprise": {"id": enterprise, "name": "Org"} if enterprise else None,
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


def home_action_body(action_id: str, value: str, *, user: str, team: str = "T0FAKE", view_id: str = "V0HOME") -> str:
    """Form body of a button click on the App Home tab: the container is a view, and there is no
    channel, message or response_url (answers must go somewhere else)."""
    payload = {
        "type": "block_actions",
        "team": {"id": team, "domain": "fake"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team},
        "api_app_id": _APP_ID,
        "token": _VERIFICATION_TOKEN,
        "container": {"type": "view", "view_id": view_id},
        "trigger_id": _TRIGGER_ID,
        "view": {"id": view_id, "type": "home", "team_id": team, "blocks": [], "state": {"values": {}}},
        "actions": [
            {
                "action_id": action_id,
                "block_id": f"home:{value}",
                "value": value,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
                "text": {"type": "plain_text", "text": action_id.replace("_", " ").title(), "emoji": True},
            }
        ],
        "is_enterprise_install": False,
        "enterprise": None,
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


def home_opened_body(user: str, *, team: str = "T0FAKE") -> str:
    """JSON body of an Events API `app_home_opened` event_callback for the Home tab."""
    now = time.time()
    return json.dumps(
        {
            "token": _VERIFICATION_TOKEN,
            "team_id": team,
            "api_app_id": _APP_ID,
            "event": {
                "type": "app_home_opened",
                "user": user,
                "channel": f"D0{user.removeprefix('U')}"[:11],
                "tab": "home",
                "event_ts": f"{now:.6f}",
            },
            "type": "event_callback",
            "event_id": f"Ev{int(now * 1000)}",
            "event_time": int(now),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": team,
                    "user_id": "UPLATEBOT",
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
    )


def post(url: str, body: str, headers: dict[str, str], timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """POST with the stdlib; 4xx/5xx come back as values (tests assert on 401s), they do not raise."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url!r}")  # urlopen would also open file:// URLs
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - scheme checked above
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers.items()), err.read()


def _channel_name(channel: str) -> str:
    return channel[2:].lower() if channel.startswith("C0") else channel.lower()
