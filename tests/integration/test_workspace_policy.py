"""Who counts as a requester or approver (issue 12, items 4 and 5), through signed HTTP into the running
service: payloads from another workspace, organisation or app are refused; guests and people from other
organisations never request or approve, whatever `requesters`/`approvers` say, unless explicitly allowed;
a command once answered "busy" stays answered when its signed delivery is replayed."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from core.requests import Status
from sandbox.signing import action_body, post, sign, slash_body
from tests.conftest import SIGNING_SECRET, Service


def _texts(service: Service, user: str) -> list[str]:
    return [e["text"] if isinstance(e, dict) else e.text for e in service.slack.ephemerals(user)]


def _command(service: Service, text: str, *, user: str = "U0BOB", **kw: Any) -> tuple[int, str]:
    body = slash_body(text, user=user, response_url=service.slack.response_url(user, user=user), **kw)
    status, _h, data = post(service.url, body, sign(SIGNING_SECRET, body))
    return status, data.decode()


def _click(service: Service, action: str, request_id: str, *, user: str, **kw: Any) -> int:
    body = action_body(action, request_id, user=user, response_url=service.slack.response_url(user, user=user), **kw)
    return post(service.url, body, sign(SIGNING_SECRET, body))[0]


def _pending_prod(service: Service) -> str:
    """A prod deploy by U0BOB, planned by a real worker, waiting for its approval."""
    _command(service, "deploy prod 1.5.0", trigger_id=f"t-{time.monotonic_ns()}")
    request_id = service.wait(service.request_ids)[0]
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()
    request = service.runtime.store.get(request_id)
    assert request is not None and request.planned, service.slack.dump()
    return request_id


def _refusals(service: Service) -> list[dict[str, str]]:
    return [e for e in service.runtime.store.audit_entries(200) if e.get("event") == "request.refused"]


def test_a_command_from_another_workspace_is_refused(service: Service) -> None:
    status, text = _command(service, "deploy stg 1.5.0", team="T0OTHER")
    assert status == 200 and "only from its own Slack workspace" in text
    status, text = _command(service, "status stg", team="T0OTHER")
    assert "only from its own Slack workspace" in text
    # Each refusal is audited just after the ack that answered it.
    expected = ["from another workspace (T0OTHER)"] * 2
    service.wait(lambda: [r["detail"] for r in _refusals(service)] == expected, what="both refusals audited")
    assert service.request_ids() == [] and service.runtime.queue.count == 0


def test_a_click_by_someone_of_another_workspace_in_a_shared_channel_is_refused(service: Service) -> None:
    """Slack Connect: the click arrives with plate-bot's team but the user's own team is another one."""
    request_id = _pending_prod(service)
    assert _click(service, "plate_approve", request_id, user="U0ALICE", user_team="T0PARTNER") == 200
    service.wait(lambda: _texts(service, "U0ALICE"))
    assert "only from its own Slack workspace" in _texts(service, "U0ALICE")[0]
    assert service.runtime.store.get(request_id).status is Status.PENDING
    assert service.runtime.queue.count == 0


def test_another_app_or_organisation_is_refused(service: Service, plate_env: dict[str, Any]) -> None:
    from config.environments import load_config

    _config_with(plate_env, {"app_id": "A0PLATE", "enterprise_id": "E0ORG"})
    service.runtime.listeners.services.config = load_config(plate_env["config_path"])
    _status, text = _command(service, "status stg", enterprise="E0ORG", app_id="A0SOMEONE")
    assert "only from its own Slack workspace" in text
    _status, text = _command(service, "status stg", enterprise="E0OTHER")
    assert "only from its own Slack workspace" in text
    _status, text = _command(service, "status stg", enterprise="E0ORG", team="T0ANYWORKSPACEOFTHEORG")
    assert "only from its own" not in text  # any workspace of the configured organisation counts
    expected = ["from another Slack app (A0SOMEONE)", "from another organisation (E0OTHER)"]
    service.wait(lambda: sorted(r["detail"] for r in _refusals(service)) == expected, what="the refusals audited")


def _config_with(plate_env: dict[str, Any], slack: dict[str, Any]) -> None:
    import yaml

    path = plate_env["config_path"]
    data = yaml.safe_load(path.read_text())
    data["slack"] = slack
    path.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        ({"is_restricted": True}, "a guest of this workspace"),
        ({"is_ultra_restricted": True}, "a guest of this workspace"),
        ({"is_stranger": True}, "from another organisation"),
        ({"team_id": "T0PARTNER"}, "from another workspace"),
    ],
)
def test_guests_and_outsiders_cannot_request_changes(service: Service, flags: dict[str, Any], reason: str) -> None:
    """`requesters: ["*"]` on prod does not let a guest or a Slack Connect partner ask for a deploy;
    reading (status) stays open to them."""
    service.slack.users["U0GUEST"] = flags
    _status, text = _command(service, "deploy prod 1.5.0", user="U0GUEST")
    assert f"Your Slack account is {reason}" in text
    assert service.request_ids() == []
    _status, text = _command(service, "status stg", user="U0GUEST")
    assert "Slack account" not in text
    # The refusal is audited just after the ack that answered it.
    service.wait(lambda: any("U0GUEST" in json.dumps(e) for e in _refusals(service)), what="the audited refusal")


def test_a_guest_approver_cannot_approve_unless_explicitly_allowed(service: Service, plate_env: dict[str, Any]) -> None:
    """U0ALICE is listed in prod's approvers, but she is a multi-channel guest: refused, nothing queued.
    Listed in slack.allowed_external_users, her approval counts."""
    from config.environments import load_config

    service.slack.users["U0ALICE"] = {"is_restricted": True}
    request_id = _pending_prod(service)
    _click(service, "plate_approve", request_id, user="U0ALICE")
    service.wait(lambda: _texts(service, "U0ALICE"))
    assert "a guest of this workspace" in _texts(service, "U0ALICE")[0]
    assert service.runtime.store.get(request_id).status is Status.PENDING
    _config_with(plate_env, {"allowed_external_users": ["U0ALICE"]})
    service.runtime.listeners.services.config = load_config(plate_env["config_path"])
    _click(service, "plate_approve", request_id, user="U0ALICE")
    service.wait(lambda: service.runtime.store.get(request_id).status is Status.APPROVED)


def test_when_slack_cannot_say_who_someone_is_changes_are_refused(service: Service) -> None:
    """users.info failing (Slack down, or the users:read scope missing): fail closed for changes."""
    service.slack.fail_next("users.info", error="missing_scope", times=5)
    _status, text = _command(service, "deploy prod 1.5.0", user="U0NEWBIE")
    assert "could not check your Slack account (missing_scope)" in text
    assert service.request_ids() == []


def test_a_busy_answer_is_final_for_a_replayed_delivery(service: Service, plate_env: dict[str, Any]) -> None:
    """`deploy stg` refused because stg was busy; the same signed body and timestamp replayed after the
    lock freed (within Slack's 5 minutes) must not run: the delivery was answered."""
    store = service.runtime.store
    holder = {"request": "other", "verb": "deploy", "user": "U0ALICE", "since": time.time(), "state": "running"}
    store.redis.set("plate:lock:stg", json.dumps(holder))
    body = slash_body("deploy stg 1.5.0", user="U0BOB", response_url=service.slack.response_url("b", user="U0BOB"))
    headers = sign(SIGNING_SECRET, body)
    status, _h, data = post(service.url, body, headers)
    assert status == 200 and b"is busy" in data, data
    store.redis.delete("plate:lock:stg")
    status, _h, data = post(service.url, body, headers)
    assert status == 200
    time.sleep(0.3)
    assert service.request_ids() == []
    assert service.runtime.queue.count == 0
    assert store.lock_holder("stg") is None
