"""sandbox.slack (fake Web API) and sandbox.signing against the real slack_sdk WebClient and slack_bolt."""

from __future__ import annotations

import json
import socketserver
import threading
import time
import wsgiref.simple_server
from collections.abc import Iterator

import pytest
from slack_bolt import Ack, App, Respond
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator

from sandbox import signing
from sandbox.slack import FakeSlack, Message

SECRET = "test-signing-secret"
BLOCKS = [
    {"type": "header", "text": {"type": "plain_text", "text": "Deploy web 1.2.3 to prod"}},
    {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "Requested by <@U0ALICE>"},
        "fields": [{"type": "mrkdwn", "text": "*Chart:* web"}, {"type": "mrkdwn", "text": "*Env:* prod"}],
    },
    {"type": "context", "elements": [{"type": "mrkdwn", "text": "needs 1 more approval"}]},
    {
        "type": "actions",
        "elements": [
            {"type": "button", "action_id": "approve", "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": "cancel", "text": {"type": "plain_text", "text": "Cancel"}},
        ],
    },
]


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack(
        usergroups={"S0APPROVERS": ["U0ALICE", "U0BOB"]},
        users={"U0ALICE": {"real_name": "Alice Example", "tz": "Europe/Berlin"}},
    ) as fake:
        yield fake


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    return WebClient(token="xoxb-test", base_url=fake.api_url)


def test_auth_test_records_token_and_requires_one(fake: FakeSlack, client: WebClient) -> None:
    assert fake.api_url == fake.url + "/api/" and fake.url.startswith("http://127.0.0.1:")
    resp = client.auth_test()
    assert resp["user_id"] == "UPLATEBOT" and resp["bot_id"] == "B0PLATE" and resp["team_id"] == "T0FAKE"
    (call,) = fake.calls_to("auth.test")
    assert call.headers["Authorization"] == "Bearer xoxb-test" and call.status == 200

    with pytest.raises(SlackApiError) as err:
        WebClient(base_url=fake.api_url).auth_test()
    assert err.value.response["error"] == "not_authed"


def test_post_update_thread_and_render(fake: FakeSlack, client: WebClient) -> None:
    root = client.chat_postMessage(channel="C0DEPLOYS", text="Deploy web 1.2.3 to prod", blocks=BLOCKS)
    assert root["channel"] == "C0DEPLOYS" and root["message"]["blocks"] == BLOCKS
    reply = client.chat_postMessage(channel="C0DEPLOYS", thread_ts=root["ts"], text="Approved by <@U0BOB>")
    other = client.chat_postMessage(channel="C0OTHER", text="unrelated")
    # ts are strings, strictly increasing.
    stamps = [root["ts"], reply["ts"], other["ts"]]
    assert all(isinstance(s, str) for s in stamps) and [float(s) for s in stamps] == sorted({float(s) for s in stamps})

    upd = client.chat_update(channel="C0DEPLOYS", ts=root["ts"], text="Deployed web 1.2.3 to prod")
    assert upd["ts"] == root["ts"] and upd["text"] == "Deployed web 1.2.3 to prod"
    with pytest.raises(SlackApiError) as err:
        client.chat_update(channel="C0DEPLOYS", ts="1.000001", text="x")
    assert err.value.response["error"] == "message_not_found"

    msgs = fake.messages("C0DEPLOYS")
    assert [m.ts for m in msgs] == [root["ts"], reply["ts"]]
    assert msgs[0].edits == 1 and msgs[0].blocks == BLOCKS  # blocks kept: the update omitted them
    assert msgs[0].history[0]["text"] == "Deploy web 1.2.3 to prod"
    assert msgs[1].thread_ts == root["ts"] and msgs[1].user == "UPLATEBOT"
    assert len(fake.messages()) == 3
    assert [m.text for m in fake.thread("C0DEPLOYS", root["ts"])] == [
        "Deployed web 1.2.3 to prod",
        "Approved by <@U0BOB>",
    ]

    assert fake.render_thread("C0DEPLOYS", root["ts"]).splitlines() == [
        "Deployed web 1.2.3 to prod (edited)",
        "Deploy web 1.2.3 to prod",
        "Requested by <@U0ALICE>",
        "*Chart:* web",
        "*Env:* prod",
        "needs 1 more approval",
        "[Approve] [Cancel]",
        "    Approved by <@U0BOB>",
    ]
    link = client.chat_getPermalink(channel="C0DEPLOYS", message_ts=root["ts"])
    assert link["permalink"] == f"https://fake.slack.com/archives/C0DEPLOYS/p{root['ts'].replace('.', '')}"


def test_form_bodies_and_query_strings_are_parsed(fake: FakeSlack, client: WebClient) -> None:
    root = client.chat_postMessage(channel="C0DEPLOYS", text="root")
    # api_call(data=...) sends form-encoded: blocks arrive as a JSON string, booleans as "1".
    client.api_call(
        "chat.postMessage",
        data={
            "channel": "C0DEPLOYS",
            "thread_ts": root["ts"],
            "text": "done",
            "blocks": json.dumps(BLOCKS[:1]),
            "reply_broadcast": True,
        },
    )
    reply = fake.messages("C0DEPLOYS")[-1]
    assert reply.blocks == BLOCKS[:1] and reply.reply_broadcast and reply.thread_ts == root["ts"]
    assert fake.calls_to("chat.postMessage")[-1].headers["Content-Type"].startswith("application/x-www-form-urlencoded")

    status, _, body = signing.post(
        fake.api_url + "chat.postMessage?channel=C0Q&text=from+query",
        "",
        {"Authorization": "Bearer xoxb-test"},
    )
    assert status == 200 and json.loads(body)["ok"]
    assert fake.messages("C0Q")[0].text == "from query"


def test_ephemerals_and_response_url_hooks(fake: FakeSlack, client: WebClient) -> None:
    resp = client.chat_postEphemeral(channel="C0DEPLOYS", user="U0ALICE", text="only Alice sees this")
    assert resp["message_ts"]
    url = fake.response_url("slash1", user="U0ALICE")
    assert url == fake.url + "/hooks/slash1"

    sent = [
        {"text": "default is ephemeral"},
        {"text": "explicit", "response_type": "ephemeral"},
        {"text": "replaces the original", "replace_original": True},
        {"text": "for everyone", "response_type": "in_channel"},
    ]
    for body in sent:
        status, _, reply = signing.post(url, json.dumps(body), {"Content-Type": "application/json"})
        assert (status, reply) == (200, b"ok")
    assert fake.hooks == [("slash1", b) for b in sent]

    alice = fake.ephemerals("U0ALICE")
    assert isinstance(alice[0], Message) and alice[0].ephemeral_user == "U0ALICE"
    assert alice[0].text == "only Alice sees this"
    assert alice[1:] == sent[:2]
    assert fake.ephemerals("U0BOB") == []
    assert fake.messages() == []  # ephemerals never show up as channel messages


def test_usergroups_users_and_views(fake: FakeSlack, client: WebClient) -> None:
    assert client.usergroups_users_list(usergroup="S0APPROVERS")["users"] == ["U0ALICE", "U0BOB"]
    with pytest.raises(SlackApiError) as err:
        client.usergroups_users_list(usergroup="S0NOPE")
    assert err.value.response["error"] == "no_such_subteam"

    alice = client.users_info(user="U0ALICE")["user"]
    assert (alice["id"], alice["real_name"], alice["tz"]) == ("U0ALICE", "Alice Example", "Europe/Berlin")
    assert client.users_info(user="U0CAROL")["user"]["name"] == "u0carol"

    home = {"type": "home", "blocks": BLOCKS[:1]}
    published = client.views_publish(user_id="U0ALICE", view=home)["view"]
    assert published["id"].startswith("V") and fake.home_views["U0ALICE"]["blocks"] == BLOCKS[:1]
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Rollback"}, "blocks": []}
    opened = client.views_open(trigger_id="t", view=modal)["view"]
    updated = client.views_update(view_id=opened["id"], view={**modal, "blocks": BLOCKS[:1]})["view"]
    assert updated["id"] == opened["id"] and fake.views[opened["id"]]["blocks"] == BLOCKS[:1]
    assert client.conversations_info(channel="C0DEPLOYS")["channel"]["name"] == "deploys"
    assert client.apps_connections_open(app_token="xapp-1")["url"].startswith("ws://")
    assert client.reactions_add(channel="C0DEPLOYS", timestamp="1.1", name="eyes")["ok"]


def test_fail_next_429_is_retried_by_rate_limit_handler(fake: FakeSlack) -> None:
    plain = WebClient(token="xoxb-test", base_url=fake.api_url)
    fake.fail_next("chat.postMessage", retry_after=7)
    with pytest.raises(SlackApiError) as err:
        plain.chat_postMessage(channel="C0DEPLOYS", text="hi")
    assert err.value.response.status_code == 429 and err.value.response.headers["Retry-After"] == "7"
    assert err.value.response["error"] == "ratelimited"

    # Retry-After 0 keeps the handler's sleep under a second (it adds random() jitter).
    fake.fail_next("chat.postMessage", retry_after=0)
    handler = RateLimitErrorRetryHandler(max_retry_count=1)
    retrying = WebClient(token="xoxb-test", base_url=fake.api_url, retry_handlers=[handler])
    assert retrying.chat_postMessage(channel="C0DEPLOYS", text="hi")["ok"]
    assert [c.status for c in fake.calls_to("chat.postMessage")] == [429, 429, 200]
    assert len(fake.messages()) == 1 and fake.rate_limited == 0  # injected faults are not rate limits


def test_fail_next_500_error_and_delay(fake: FakeSlack, client: WebClient) -> None:
    fake.fail_next("chat.update", status=500)
    root = client.chat_postMessage(channel="C0DEPLOYS", text="v1")
    with pytest.raises(SlackApiError) as err:
        client.chat_update(channel="C0DEPLOYS", ts=root["ts"], text="v2")
    assert err.value.response.status_code == 500 and err.value.response["error"] == "fatal_error"

    fake.fail_next("chat.update", status=503)
    retrying = WebClient(
        token="xoxb-test",
        base_url=fake.api_url,
        retry_handlers=[ServerErrorRetryHandler(1, FixedValueRetryIntervalCalculator(0.01))],
    )
    assert retrying.chat_update(channel="C0DEPLOYS", ts=root["ts"], text="v2")["ok"]

    fake.fail_next("chat.postMessage", error="channel_not_found", times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as err:
            client.chat_postMessage(channel="C0GONE", text="x")
        assert err.value.response.status_code == 200 and err.value.response["error"] == "channel_not_found"
    assert client.chat_postMessage(channel="C0GONE", text="x")["ok"]

    fake.fail_next("chat.update", delay=0.6)
    slow = WebClient(token="xoxb-test", base_url=fake.api_url, timeout=0.2)  # type: ignore[arg-type]
    with pytest.raises(TimeoutError):
        slow.chat_update(channel="C0DEPLOYS", ts=root["ts"], text="v3")
    # The delayed call is still answered normally, just too late for the client.
    fake.wait_for(lambda f: f.messages("C0DEPLOYS")[0].text == "v3", timeout=3)
    assert [c.status for c in fake.calls_to("chat.update")] == [500, 503, 200, 200]


def test_rate_limits_sliding_window() -> None:
    with FakeSlack(rate_limits={"chat.update": 2, "chat.postMessage": 1}, rate_window=0.5) as fake:
        client = WebClient(token="xoxb-test", base_url=fake.api_url)
        root = client.chat_postMessage(channel="C0A", text="a")
        client.chat_postMessage(channel="C0B", text="b")  # chat.postMessage is limited per channel
        with pytest.raises(SlackApiError) as err:
            client.chat_postMessage(channel="C0A", text="again")
        assert err.value.response.status_code == 429 and int(err.value.response.headers["Retry-After"]) >= 1

        for _ in range(2):
            client.chat_update(channel="C0A", ts=root["ts"], text="edit")
        with pytest.raises(SlackApiError):
            client.chat_update(channel="C0A", ts=root["ts"], text="edit")
        assert fake.rate_limited == 2 and fake.messages("C0A")[0].edits == 2

        time.sleep(0.55)  # the window slides: allowed again
        assert client.chat_update(channel="C0A", ts=root["ts"], text="later")["ok"]


def test_wait_for_timeout_dumps_calls_and_reset(fake: FakeSlack, client: WebClient) -> None:
    client.chat_postMessage(channel="C0DEPLOYS", text="hello")
    with pytest.raises(AssertionError, match=r"(?s)timed out.*chat\.postMessage.*hello"):
        fake.wait_for(lambda f: False, timeout=0.05)
    assert "Bearer" not in fake.dump()

    before = fake.messages()[0].ts
    fake.fail_next("chat.postMessage")
    fake.reset()
    assert fake.calls == [] and fake.messages() == [] and fake.hooks == []
    after = client.chat_postMessage(channel="C0DEPLOYS", text="hello")["ts"]  # fault was cleared too
    assert float(after) > float(before)


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    daemon_threads = True


class _Quiet(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_bolt_accepts_signed_requests_and_rejects_bad_ones(fake: FakeSlack) -> None:
    app = App(signing_secret=SECRET, client=WebClient(base_url=fake.api_url, token="xoxb-test"))

    @app.command("/plate")
    def plate(ack: Ack, respond: Respond, command: dict) -> None:  # bolt injects arguments by name
        ack(f"queued {command['text']}")
        respond(f"deploying {command['text']}")

    @app.action("approve")
    def approve(ack: Ack, body: dict, client: WebClient) -> None:
        ack()
        client.chat_postMessage(channel=body["channel"]["id"], text=f"approved {body['actions'][0]['value']}")

    @app.event("app_home_opened")
    def home(event: dict, client: WebClient) -> None:
        client.views_publish(user_id=event["user"], view={"type": "home", "blocks": []})

    server = wsgiref.simple_server.make_server(
        "127.0.0.1", 0, SlackRequestHandler(app), server_class=_ThreadingWSGIServer, handler_class=_Quiet
    )
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/slack/events"
    try:
        body = signing.slash_body("web prod", response_url=fake.response_url("s", user="U0ALICE"))
        status, _, reply = signing.post(url, body, signing.sign(SECRET, body))
        assert (status, reply) == (200, b"queued web prod")
        fake.wait_for(lambda f: f.ephemerals("U0ALICE") == [{"text": "deploying web prod"}])

        body = signing.action_body("approve", "job-42", user="U0BOB")
        assert signing.post(url, body, signing.sign(SECRET, body))[0] == 200
        fake.wait_for(lambda f: [m.text for m in f.messages("C0DEPLOYS")] == ["approved job-42"])
        assert fake.calls_to("chat.postMessage")[0].params["team_id"] == "T0FAKE"  # bolt adds team_id

        body = signing.home_opened_body("U0ALICE")
        headers = signing.sign(SECRET, body)
        assert headers["Content-Type"] == "application/json"
        assert signing.post(url, body, headers)[0] == 200
        fake.wait_for(lambda f: "U0ALICE" in f.home_views)

        body = signing.slash_body("web prod")
        bad_sig = signing.sign("wrong-secret", body)
        stale = signing.sign(SECRET, body, timestamp=int(time.time()) - 600)
        tampered = signing.sign(SECRET, body)
        for headers, sent in [(bad_sig, body), (stale, body), (tampered, body + "&x=1")]:
            status, _, reply = signing.post(url, sent, headers)
            assert status == 401 and json.loads(reply) == {"error": "invalid request"}
        assert len(fake.hooks) == 1  # none of the rejected requests ran the listener
    finally:
        server.shutdown()
        server.server_close()
