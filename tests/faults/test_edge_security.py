"""The HTTP edge under attack (issue 12, items 1-4): a request that is not provably Slack's gets a 4xx
and makes plate-bot do nothing else: no outbound request (no `respond()` to an attacker's URL), no 500,
no ERROR log or traceback. Every case drives the production WSGI app over real HTTP."""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.parse
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.signing import post, sign, slash_body
from tests.conftest import SIGNING_SECRET, Service

pytestmark = pytest.mark.faults
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """Log records at ERROR or with a traceback: an attacker must not be able to produce either."""
    caplog.set_level(logging.INFO)
    found: list[logging.LogRecord] = []
    yield found
    found.extend(r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info)


def _quiet(service: Service, errors: list[logging.LogRecord], caplog: pytest.LogCaptureFixture) -> None:
    time.sleep(0.2)  # a listener wrongly run (Bolt acks first) would have written by now
    assert service.request_ids() == []
    assert service.runtime.queue.count == 0
    assert [c.method for c in service.slack.calls if c.method != "auth.test"] == []
    assert service.slack.hooks == [], "plate-bot talked to a URL taken from an unverified body"
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], [r.getMessage() for r in bad]


@pytest.mark.parametrize("timestamp", ["now", "", "1e3", " 12", "-1", "9" * 40, "\u00b2\u00b3", "12.5", "0x10"])
def test_unparseable_timestamp_is_a_401_and_nothing_else(
    service: Service, errors: list[logging.LogRecord], caplog: pytest.LogCaptureFixture, timestamp: str
) -> None:
    """slack_sdk's verifier raised on `int(timestamp)`; Bolt's error handler then POSTed an apology to
    the body's response_url (blind SSRF) and answered 500 with a traceback."""
    body = slash_body("deploy stg 1.5.0", response_url=service.slack.response_url("attacker"))
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": "v0=" + "0" * 64,
    }
    status, _h, data = post(service.url, body, headers)
    assert status == 401, data
    _quiet(service, errors, caplog)


def test_signature_headers_of_any_shape_are_a_401(
    service: Service, errors: list[logging.LogRecord], caplog: pytest.LogCaptureFixture
) -> None:
    body = slash_body("deploy stg", response_url=service.slack.response_url("attacker"))
    good = sign(SIGNING_SECRET, body)
    for signature in ["", "v0=", "v1=" + good["X-Slack-Signature"][3:], "v0=zz", good["X-Slack-Signature"] + "0"]:
        headers = {**good, "X-Slack-Signature": signature}
        assert post(service.url, body, headers)[0] == 401, signature
    no_sig = {k: v for k, v in good.items() if k != "X-Slack-Signature"}
    assert post(service.url, body, no_sig)[0] == 401
    _quiet(service, errors, caplog)


def _raw_exchange(port: int, head: bytes, body_chunks: list[bytes] = (), pause: float = 0.0) -> tuple[bytes, float]:
    """Send `head` and then the chunks (with `pause` between them) on one connection; return what the
    server answered and how long until it answered or closed."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                time.sleep(pause)
                sock.sendall(chunk)
        except OSError:
            pass  # the server closed on us: that is the point
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
                if b"\r\n\r\n" in data:
                    break
        except OSError:
            pass
    return data, time.monotonic() - started


def _head(length: int | str, path: str = "/slack/events") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: plate\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {length}\r\nX-Slack-Request-Timestamp: {int(time.time())}\r\n"
        f"X-Slack-Signature: v0={'0' * 64}\r\n\r\n"
    ).encode()


def test_a_claimed_huge_body_is_refused_at_once(service: Service) -> None:
    """A 1 GB Content-Length with no body following: 413 before a byte of body is read (waitress
    buffered up to 1 GiB first, and held the connection while the body trickled in)."""
    data, seconds = _raw_exchange(service.server.effective_port, _head(1_000_000_000))
    assert data.startswith(b"HTTP/1.1 413"), data[:200]
    assert seconds < 5
    assert service.server.adj.max_request_body_size <= 256 * 1024 + 1


def test_a_slow_body_is_cut_off(plate_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A body trickling in (one byte every 0.3 s, never idle long enough for an idle timeout) is cut at
    the request deadline (PLATE_HTTP_REQUEST_TIMEOUT), not held for as long as the client likes."""
    monkeypatch.setenv("PLATE_HTTP_REQUEST_TIMEOUT", "2")
    with _served() as (_runtime, server):
        data, seconds = _raw_exchange(server.effective_port, _head(200), [b"x"] * 40, pause=0.3)
    assert seconds < 8, f"held for {seconds:.1f} s"
    assert not data.startswith(b"HTTP/1.1 200")


def test_connections_are_bounded(plate_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """With PLATE_HTTP_CONNECTION_LIMIT=5, ten idle connections leave at most 5 open in the process (the
    rest wait in the kernel's listen backlog); once the clients hang up, the slots are free at once, not
    after the idle timeout, and a waiting request is answered."""
    monkeypatch.setenv("PLATE_HTTP_CONNECTION_LIMIT", "5")
    with _served() as (_runtime, server):
        port = server.effective_port
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(10)]
        time.sleep(0.5)
        assert 0 < len(server.active_channels) <= 5
        probe = socket.create_connection(("127.0.0.1", port), timeout=5)
        probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: plate\r\n\r\n")
        for sock in idle:
            sock.close()
        assert probe.recv(100).startswith(b"HTTP/1.1 200")
        probe.close()


class _served:
    """A production runtime and HTTP server built from the current environment variables."""

    def __enter__(self) -> tuple[object, object]:
        import threading

        from bot.runtime import build_runtime
        from config.environments import load_config
        from config.settings import Settings

        settings = Settings()
        self.runtime = build_runtime(settings, load_config(settings.plate_config))
        self.server = self.runtime.http_server("127.0.0.1", 0)
        threading.Thread(target=self.runtime.run_http, args=(self.server,), daemon=True).start()
        return self.runtime, self.server

    def __exit__(self, *exc: object) -> None:
        self.runtime.shutdown(self.server, timeout=5)


@pytest.mark.parametrize("signed", [True, False])
def test_json_content_type_with_parameters_and_a_form_body(
    service: Service, errors: list[logging.LogRecord], caplog: pytest.LogCaptureFixture, signed: bool
) -> None:
    """`application/json; charset=utf-8` over a form body: a 4xx, never a 500."""
    body = slash_body("deploy stg", response_url=service.slack.response_url("attacker"))
    headers = sign(SIGNING_SECRET if signed else "wrong", body)
    headers["Content-Type"] = "application/json; charset=utf-8"
    status, _h, data = post(service.url, body, headers)
    assert 400 <= status < 500, (status, data)
    _quiet(service, errors, caplog)


@pytest.mark.parametrize("signed", [True, False])
def test_json_nested_50000_levels_is_a_4xx(
    service: Service, errors: list[logging.LogRecord], caplog: pytest.LogCaptureFixture, signed: bool
) -> None:
    """The ingress guard's json.loads raised RecursionError: a 500 with a traceback."""
    depth = 50_000
    body = '{"type": "event_callback", "event": ' + "[" * depth + "]" * depth + "}"
    status, _h, data = post(service.url, body, sign(SIGNING_SECRET if signed else "wrong", body))
    assert 400 <= status < 500, (status, data[:200])
    form = urllib.parse.urlencode({"payload": '{"type": "block_actions", "x": ' + "[" * depth + "]" * depth + "}"})
    status, _h, data = post(service.url, form, sign(SIGNING_SECRET if signed else "wrong", form))
    assert 400 <= status < 500, (status, data[:200])
    _quiet(service, errors, caplog)


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "interactive_message", "callback_id": "x", "actions": [{"name": "a", "value": "b"}]},
        {"type": "workflow_step_edit", "callback_id": "x", "workflow_step": {"workflow_step_edit_id": "1"}},
        {"type": "dialog_submission", "callback_id": "x", "submission": {}},
        {"type": "view_submission", "view": {"callback_id": "x", "state": {"values": {}}}},
        {"type": "shortcut", "callback_id": "x"},
        {"type": "message_action", "callback_id": "x"},
        {"type": "block_suggestion", "action_id": "x", "value": "a"},
    ],
)
def test_signed_payload_types_plate_bot_does_not_handle_are_a_404(
    service: Service, errors: list[logging.LogRecord], caplog: pytest.LogCaptureFixture, payload: dict[str, object]
) -> None:
    payload = {
        **payload,
        "team": {"id": "T0FAKE"},
        "user": {"id": "U0ALICE"},
        "api_app_id": "A0PLATE",
        "response_url": service.slack.response_url("r"),
        "trigger_id": "t",
    }
    body = urllib.parse.urlencode({"payload": json.dumps(payload)})
    status, _h, data = post(service.url, body, sign(SIGNING_SECRET, body))
    assert status == 404, (status, data)
    _quiet(service, errors, caplog)


_header_values = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=30),
    st.sampled_from(["", "now", "1e3", "-5", "\u00b9", str(int(time.time())), "v0=", "v0=" + "a" * 64]),
)
_content_types = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "text/plain",
        "multipart/form-data; boundary=x",
        "",
    ]
)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


_bodies = st.one_of(
    st.text(max_size=300),
    st.builds(lambda d: '{"type": "event_callback", "event": ' + _nested(d) + "}", st.integers(0, 3000)),
    st.builds(lambda p: urllib.parse.urlencode({"payload": p}), st.text(max_size=200)),
    st.builds(lambda t: slash_body(t), st.text(max_size=100)),
)


@FUZZ
@given(
    body=_bodies,
    content_type=_content_types,
    timestamp=_header_values,
    signature=_header_values,
    sign_it=st.booleans(),
)
def test_fuzzed_edge_is_never_a_500(
    service: Service, body: str, content_type: str, timestamp: str, signature: str, sign_it: bool
) -> None:
    """Any body, content type and header shape, signed correctly or not: a 2xx/4xx, never a 500, and
    unsigned ones never reach a listener or an outbound URL."""
    try:
        body.encode()
    except UnicodeEncodeError:
        return  # lone surrogates cannot go on the wire
    headers = (
        sign(SIGNING_SECRET, body)
        if sign_it
        else {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}
    )
    if content_type:
        headers["Content-Type"] = content_type
    status, _h, data = post(service.url, body, headers)
    assert status < 500, (status, data[:300])
    if not sign_it:
        assert status == 401
        assert service.slack.hooks == []


def test_a_burst_for_one_environment_posts_one_card_and_answers_the_rest_busy(service: Service) -> None:
    """Twenty `deploy stg` at once (stg needs no approval): one card, nineteen "busy" acks, and no card
    posted and then cancelled as busy (the lock used to be taken only after the card was posted)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> bytes:
        body = slash_body(
            "deploy stg 1.5.0", user="U0BOB", trigger_id=f"burst-{i}", response_url=service.slack.response_url("b")
        )
        return post(service.url, body, sign(SIGNING_SECRET, body))[2]

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(one, range(20)))
    assert sum(b"is busy" in a for a in answers) == 19, answers
    service.wait(lambda: service.runtime.queue.count == 1)
    time.sleep(0.3)
    cards = service.slack.messages("C0DEPLOYS")
    assert len(cards) == 1, service.slack.dump()
    assert "ancel" not in json.dumps(cards[0].blocks)
    assert len(service.request_ids()) == 1
