"""A fake Slack Web API on loopback, for tests, `plate-bot demo` and the benchmarks.

Point the real client at it: `WebClient(token="xoxb-test", base_url=fake.api_url)` (or plate-bot's
SLACK_API_URL). It keeps just enough state (messages, threads, ephemerals, views) to answer the way
Slack does, records every call, and can inject the failures Slack produces in real life: 429 with
Retry-After, 5xx, `ok: false` errors, slow answers, and per-method rate limits.
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import itertools
import json
import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

__all__ = ["SLACK_TIER_LIMITS", "Call", "FakeSlack", "Message"]

# Documented per-minute floors (https://api.slack.com/docs/rate-limits): Tier 1 1+/min, Tier 2 20+/min,
# Tier 3 50+/min, Tier 4 100+/min, applied per method per workspace. chat.postMessage is "special":
# about 1 message/s per channel, so 60/min here, counted per channel. Pass this (or a subset with
# smaller numbers) as `rate_limits=` to exercise plate-bot's backoff.
SLACK_TIER_LIMITS: dict[str, int] = {
    "chat.postMessage": 60,  # special: ~1/s per channel
    "chat.update": 50,  # Tier 3
    "chat.delete": 50,  # Tier 3
    "chat.postEphemeral": 100,  # Tier 4
    "conversations.info": 50,  # Tier 3
    "conversations.history": 50,  # Tier 3
    "conversations.replies": 50,  # Tier 3
    "usergroups.users.list": 20,  # Tier 2
    "users.info": 100,  # Tier 4
    "views.publish": 100,  # Tier 4
    "views.open": 100,  # Tier 4
    "views.update": 100,  # Tier 4
}

# Methods whose limit Slack applies per channel rather than per workspace.
_PER_CHANNEL = frozenset({"chat.postMessage"})

# Params that Slack takes as JSON but that arrive as strings in form-encoded bodies.
_JSON_PARAMS = ("blocks", "attachments", "view", "metadata")

_TEAM_ID = "T0FAKE"
_BOT_ID = "B0PLATE"


@dataclass
class Call:
    """One Web API request as the fake saw it."""

    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    at: float  # time.time() on arrival
    status: int = 200  # HTTP status the fake answered with (429/5xx for injected failures)


@dataclass
class Message:
    """A message in its current state (after edits)."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    user: str | None = None
    edits: int = 0
    ephemeral_user: str | None = None
    reply_broadcast: bool = False
    attachments: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    # Earlier versions as {"text", "blocks"}, oldest first, so tests can assert a progression.
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Fault:
    status: int
    retry_after: int
    error: str | None
    delay: float
    remaining: int


def _ts_key(ts: str) -> tuple[int, int]:
    # Compare Slack timestamps numerically; "1700000000.000100" is seconds.microseconds.
    sec, _, frac = ts.partition(".")
    return int(sec or 0), int((frac or "0").ljust(6, "0")[:6])


def _truthy(value: Any) -> bool:
    # JSON bodies carry real booleans; form bodies carry "1"/"true" (slack_sdk converts True -> "1").
    return value is True or str(value).lower() in {"1", "true"}


def _text_of(obj: Any) -> str:
    """Text of a composition object ({"type": "mrkdwn"|"plain_text", "text": ...}) or a string."""
    if isinstance(obj, dict):
        return str(obj.get("text", ""))
    return "" if obj is None else str(obj)


def _rich_text(element: Any) -> str:
    # rich_text blocks nest sections/lists of elements; flatten whatever text they carry.
    if isinstance(element, dict):
        if element.get("type") == "user":
            return f"<@{element.get('user_id', '')}>"
        if element.get("type") == "link":
            return str(element.get("text") or element.get("url", ""))
        if "text" in element and isinstance(element["text"], str):
            return element["text"]
        return "".join(_rich_text(e) for e in element.get("elements", []))
    return ""


def _element_label(element: dict[str, Any]) -> str:
    kind = element.get("type")
    if kind == "button":
        return f"[{_text_of(element.get('text'))}]"
    if kind in {"static_select", "external_select", "users_select", "conversations_select"}:
        return f"[{_text_of(element.get('placeholder')) or kind} ▾]"
    if kind == "overflow":
        return "[⋯]"
    if kind == "image":
        return f"[image: {element.get('alt_text', '')}]"
    if kind in {"mrkdwn", "plain_text"}:
        return _text_of(element)
    return f"[{kind}]"


def render_blocks(blocks: list[dict[str, Any]]) -> list[str]:
    """Plain-text lines for Block Kit blocks, roughly what a person reads in the client."""
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind in {"section", "header"}:
            if block.get("text"):
                lines.append(_text_of(block["text"]))
            lines.extend(_text_of(f) for f in block.get("fields", []))
            if isinstance(block.get("accessory"), dict):
                lines.append(_element_label(block["accessory"]))
        elif kind in {"context", "actions"}:
            labels = [_element_label(e) for e in block.get("elements", [])]
            lines.append(("  " if kind == "context" else " ").join(x for x in labels if x))
        elif kind == "divider":
            lines.append("---")
        elif kind == "rich_text":
            lines.append(_rich_text(block))
        elif kind == "image":
            lines.append(f"[image: {block.get('alt_text', '')}]")
        elif kind == "input":
            lines.append(f"{_text_of(block.get('label'))}: ____")
    return [line for line in lines if line]


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck (delayed) handler must not block interpreter exit
    fake: FakeSlack


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # HTTP/1.0 (one request per connection) so that stop() really cuts every client off.

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean; FakeSlack.calls is the log

    def do_POST(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = urlsplit(self.path)
        status, headers, body = self._route(path.path, path.query, raw)
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. its timeout fired during an injected delay)

    def _route(self, path: str, query: str, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        fake = self.server.fake
        try:
            if path.startswith("/api/"):
                return fake._api(path.rsplit("/", 1)[-1], raw, query, dict(self.headers.items()))
            if path.startswith("/hooks/"):
                return fake._hook(path[len("/hooks/") :], raw, self.headers.get("Content-Type", ""))
            if path in {"", "/"}:
                return 200, {"Content-Type": "text/plain"}, b"fake slack"
            return 404, {"Content-Type": "text/plain"}, b"not found"
        except Exception as err:
            # A bug in the fake should surface as a readable 500, not a dropped connection.
            return 500, {"Content-Type": "text/plain"}, f"fake slack error: {err!r}".encode()


class FakeSlack:
    """Fake Slack Web API + response_url endpoint on a loopback ThreadingHTTPServer."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        usergroups: dict[str, list[str]] | None = None,
        users: dict[str, dict[str, Any]] | None = None,
        rate_limits: dict[str, int] | None = None,
        bot_user_id: str = "UPLATEBOT",
        rate_window: float = 60.0,
    ) -> None:
        self.host, self.port = host, port
        self.usergroups = dict(usergroups or {})
        self.users = dict(users or {})
        self.rate_limits = dict(rate_limits or {})
        self.rate_window = rate_window  # seconds; shorten it in benchmarks that want fast recovery
        self.bot_user_id = bot_user_id
        # What apps.connections.open hands out: point it at a sandbox.socketmode.FakeSocketMode.
        self.socket_mode_url = "ws://127.0.0.1:1/link"
        self._lock = threading.RLock()
        # The ts counter survives reset() so timestamps stay strictly increasing for the fake's lifetime.
        self._ts_counter = itertools.count(1_700_000_000_000_100, 100)
        self._view_counter = itertools.count(1)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _Handler)
        server.fake = self
        self._server = server
        self.port = server.server_address[1]
        # A short poll interval makes stop() (server.shutdown) return in ~50 ms instead of 0.5 s.
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="fake-slack", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def response_url(self, name: str = "r", *, user: str | None = None) -> str:
        """A response_url on this fake. `user` ties its ephemeral posts to a user for ephemerals(user)."""
        if user is not None:
            with self._lock:
                self._hook_users[name] = user
        return f"{self.url}/hooks/{name}"

    def reset(self) -> None:
        """Forget all recorded calls, state and injected faults (users/usergroups/limits stay)."""
        with self._lock:
            self.calls: list[Call] = []
            self.hooks: list[tuple[str, dict[str, Any]]] = []
            self.home_views: dict[str, dict[str, Any]] = {}
            self.views: dict[str, dict[str, Any]] = {}
            self.rate_limited = 0
            self._messages: dict[tuple[str, str], Message] = {}
            self._ephemerals: list[Message] = []
            self._hook_users: dict[str, str] = {}
            self._faults: dict[str, deque[_Fault]] = defaultdict(deque)
            self._windows: dict[tuple[str, str], deque[float]] = defaultdict(deque)

    # -- inspection ----------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def messages(self, channel: str | None = None) -> list[Message]:
        with self._lock:
            found = [m for m in self._messages.values() if channel is None or m.channel == channel]
            return copy.deepcopy(sorted(found, key=lambda m: _ts_key(m.ts)))

    def ephemerals(self, user: str | None = None) -> list[Message | dict[str, Any]]:
        """chat.postEphemeral messages, then ephemeral response_url posts (their JSON bodies).

        A hook post counts as ephemeral when it says response_type "ephemeral", or says nothing and
        does not replace/delete the original (Slack's default). With `user`, hook posts are included
        only when their response_url was made with response_url(name, user=user).
        """
        with self._lock:
            out: list[Message | dict[str, Any]] = [
                copy.deepcopy(m) for m in self._ephemerals if user is None or m.ephemeral_user == user
            ]
            for name, body in self.hooks:
                kind = body.get("response_type")
                replaces = _truthy(body.get("replace_original")) or _truthy(body.get("delete_original"))
                ephemeral = kind == "ephemeral" or (kind is None and not replaces)
                if ephemeral and (user is None or self._hook_users.get(name) == user):
                    out.append(copy.deepcopy(body))
            return out

    def thread(self, channel: str, ts: str) -> list[Message]:
        with self._lock:
            found = [m for m in self._messages.values() if m.channel == channel and (m.ts == ts or m.thread_ts == ts)]
            return copy.deepcopy(sorted(found, key=lambda m: _ts_key(m.ts)))

    def render_thread(self, channel: str, ts: str) -> str:
        """The thread as plain text: each message's text, then its blocks; replies indented."""
        out: list[str] = []
        for msg in self.thread(channel, ts):
            indent = "" if msg.ts == ts else "    "
            lines = [msg.text] if msg.text else []
            # Block text often repeats the fallback `text`; print it once.
            lines += [line for line in render_blocks(msg.blocks) if line != msg.text]
            lines += [_text_of(a.get("text") or a.get("fallback")) for a in msg.attachments]
            lines = [line for line in lines if line] or ["(empty)"]
            if msg.edits:
                lines[0] += " (edited)"
            for line in lines:
                out.extend(indent + part for part in line.splitlines() or [""])
        return "\n".join(out)

    def wait_for(self, predicate: Callable[[FakeSlack], bool], timeout: float = 5.0) -> None:
        """Poll until predicate(self) is true. Bolt runs listeners after the HTTP ack, so tests must wait."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self):
                return
            if time.monotonic() >= deadline:
                raise AssertionError(f"FakeSlack.wait_for timed out after {timeout}s\n{self.dump()}")
            time.sleep(0.01)

    def dump(self) -> str:
        """Recorded calls and hook posts, one per line (for assertion messages)."""
        with self._lock:
            lines = [f"calls ({len(self.calls)}):"]
            for c in self.calls:
                params = {k: v for k, v in c.params.items() if k != "token"}
                lines.append(f"  {c.at:.3f} {c.status} {c.method} {json.dumps(params, default=str)[:300]}")
            lines.append(f"hooks ({len(self.hooks)}):")
            lines += [f"  {name} {json.dumps(body, default=str)[:300]}" for name, body in self.hooks]
            return "\n".join(lines)

    # -- fault injection -----------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int = 1,
        times: int = 1,
        error: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """Make the next `times` calls of `method` fail.

        Precedence: `error` -> HTTP 200 {"ok": false, "error": error}; `delay` alone -> sleep, then the
        normal answer (drives client timeouts); `delay` with a non-429 status -> sleep, then that status;
        otherwise `status`: 429 with Retry-After, or e.g. 500 with {"ok": false, "error": "fatal_error"}.
        """
        with self._lock:
            self._faults[method].append(_Fault(status, retry_after, error, delay, times))

    # -- request handling (called from server threads) ---------------------------------------

    def _api(self, method: str, raw: bytes, query: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        # urllib sends "Content-type"; header names are case-insensitive, so look them up lower-cased.
        lower = {k.lower(): v for k, v in headers.items()}
        try:
            params = self._parse(raw, query, lower.get("content-type", ""))
        except ValueError:  # bad JSON body or JSON-typed param: Slack answers invalid_json
            call = Call(
                method=method,
                params={"_raw": raw.decode("utf-8", "replace")},
                headers=headers,
                at=time.time(),
            )
            with self._lock:
                self.calls.append(call)
            return self._json(call, 200, {"ok": False, "error": "invalid_json"})
        call = Call(method=method, params=params, headers=headers, at=time.time())
        with self._lock:
            self.calls.append(call)
            fault = self._take_fault(method)
        if fault is not None and fault.delay > 0:
            time.sleep(fault.delay)  # outside the lock: other calls keep flowing

        # Presence only: any Bearer token (or legacy `token` param) is accepted.
        if not lower.get("authorization", "").startswith("Bearer ") and not params.get("token"):
            return self._json(call, 200, {"ok": False, "error": "not_authed"})

        if fault is not None:
            if fault.error is not None:
                return self._json(call, 200, {"ok": False, "error": fault.error})
            if fault.status == 429 and fault.delay <= 0:
                return self._ratelimited(call, fault.retry_after)
            if fault.status != 429:
                error = "fatal_error" if fault.status >= 500 else "invalid_request"
                return self._json(call, fault.status, {"ok": False, "error": error})

        with self._lock:
            wait = self._check_rate(method, params)
            if wait is not None:
                self.rate_limited += 1
                return self._ratelimited(call, wait)
            reply = self._answer(method, params)
        return self._json(call, 200, reply)

    def _hook(self, name: str, raw: bytes, content_type: str) -> tuple[int, dict[str, str], bytes]:
        text = raw.decode("utf-8", "replace")
        try:
            body = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError:
            body = self._parse(raw, "", content_type)
        if not isinstance(body, dict):
            body = {"body": body}
        with self._lock:
            self.hooks.append((name, body))
        # Slack answers response_url posts with a bare "ok".
        return 200, {"Content-Type": "text/plain"}, b"ok"

    @staticmethod
    def _parse(raw: bytes, query: str, content_type: str) -> dict[str, Any]:
        params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
        text = raw.decode("utf-8", "replace")
        if "json" in content_type or text.lstrip().startswith("{"):
            loaded = json.loads(text) if text.strip() else {}
            if isinstance(loaded, dict):
                params.update(loaded)
        elif content_type.startswith("multipart/form-data"):
            # files.upload-style bodies: keep text fields, report file parts by size.
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
            )
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True) or b""
                if part.get_filename():
                    params[str(name)] = {"filename": part.get_filename(), "size": len(payload)}
                else:
                    params[str(name)] = payload.decode("utf-8", "replace")
        else:
            params.update(parse_qsl(text, keep_blank_values=True))
        for key in _JSON_PARAMS:
            if isinstance(params.get(key), str) and params[key].strip()[:1] in {"[", "{"}:
                params[key] = json.loads(params[key])
        return params

    def _take_fault(self, method: str) -> _Fault | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        return fault

    def _check_rate(self, method: str, params: dict[str, Any]) -> int | None:
        """Sliding-window limit; returns Retry-After seconds when the call must be refused."""
        limit = self.rate_limits.get(method)
        if limit is None:
            return None
        key = (method, str(params.get("channel", "")) if method in _PER_CHANNEL else "")
        window = self._windows[key]
        now = time.monotonic()
        while window and now - window[0] >= self.rate_window:
            window.popleft()
        if len(window) >= limit:
            return max(1, math.ceil(self.rate_window - (now - window[0])))
        window.append(now)
        return None

    def _ratelimited(self, call: Call, retry_after: int) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = self._json(call, 429, {"ok": False, "error": "ratelimited"})
        headers["Retry-After"] = str(retry_after)
        return status, headers, body

    @staticmethod
    def _json(call: Call, status: int, payload: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        call.status = status
        return status, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(payload).encode()

    def _next_ts(self) -> str:
        value = next(self._ts_counter)
        return f"{value // 1_000_000}.{value % 1_000_000:06d}"

    def _message_json(self, m: Message) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "message",
            "user": m.user,
            "bot_id": _BOT_ID,
            "team": _TEAM_ID,
            "text": m.text,
            "ts": m.ts,
            "blocks": m.blocks,
        }
        if m.thread_ts:
            out["thread_ts"] = m.thread_ts
        if m.attachments:
            out["attachments"] = m.attachments
        if m.edits:
            out["edited"] = {"user": m.user, "ts": m.history[-1].get("edited_at", m.ts)}
        return out

    def _answer(self, method: str, p: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://fake.slack.com/",
                "team": "Fake",
                "user": "plate",
                "team_id": _TEAM_ID,
                "user_id": self.bot_user_id,
                "bot_id": _BOT_ID,
                "is_enterprise_install": False,
            }
        if method == "chat.postMessage":
            channel = str(p.get("channel") or "")
            if not channel:
                return {"ok": False, "error": "channel_not_found"}
            if not (p.get("text") or p.get("blocks") or p.get("attachments")):
                return {"ok": False, "error": "no_text"}
            msg = Message(
                channel=channel,
                ts=self._next_ts(),
                text=str(p.get("text") or ""),
                blocks=list(p.get("blocks") or []),
                thread_ts=str(p["thread_ts"]) if p.get("thread_ts") else None,
                user=self.bot_user_id,
                reply_broadcast=_truthy(p.get("reply_broadcast")),
                attachments=list(p.get("attachments") or []),
                metadata=p.get("metadata") if isinstance(p.get("metadata"), dict) else None,
            )
            self._messages[(channel, msg.ts)] = msg
            return {"ok": True, "channel": channel, "ts": msg.ts, "message": self._message_json(msg)}
        if method == "chat.update":
            channel, ts = str(p.get("channel") or ""), str(p.get("ts") or "")
            msg = self._messages.get((channel, ts))
            if msg is None:
                return {"ok": False, "error": "message_not_found"}
            # Slack keeps fields that the update omits (an empty list clears blocks).
            msg.history.append({"text": msg.text, "blocks": msg.blocks, "edited_at": self._next_ts()})
            if "text" in p:
                msg.text = str(p["text"] or "")
            if "blocks" in p:
                msg.blocks = list(p["blocks"] or [])
            if "attachments" in p:
                msg.attachments = list(p["attachments"] or [])
            msg.edits += 1
            return {
                "ok": True,
                "channel": channel,
                "ts": ts,
                "text": msg.text,
                "message": self._message_json(msg),
            }
        if method == "chat.delete":
            channel, ts = str(p.get("channel") or ""), str(p.get("ts") or "")
            if self._messages.pop((channel, ts), None) is None:
                return {"ok": False, "error": "message_not_found"}
            return {"ok": True, "channel": channel, "ts": ts}
        if method == "chat.postEphemeral":
            if not p.get("user"):
                return {"ok": False, "error": "user_not_in_channel"}
            msg = Message(
                channel=str(p.get("channel") or ""),
                ts=self._next_ts(),
                text=str(p.get("text") or ""),
                blocks=list(p.get("blocks") or []),
                thread_ts=str(p["thread_ts"]) if p.get("thread_ts") else None,
                user=self.bot_user_id,
                ephemeral_user=str(p["user"]),
                attachments=list(p.get("attachments") or []),
            )
            self._ephemerals.append(msg)
            return {"ok": True, "message_ts": msg.ts}
        if method == "chat.getPermalink":
            channel, ts = str(p.get("channel") or ""), str(p.get("message_ts") or "")
            if not channel or not ts:
                return {"ok": False, "error": "message_not_found"}
            return {
                "ok": True,
                "channel": channel,
                "permalink": f"https://fake.slack.com/archives/{channel}/p{ts.replace('.', '')}",
            }
        if method == "usergroups.users.list":
            group = str(p.get("usergroup") or "")
            if group not in self.usergroups:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": list(self.usergroups[group])}
        if method == "users.info":
            uid = str(p.get("user") or "")
            if not uid:
                return {"ok": False, "error": "user_not_found"}
            name = uid.lower()
            user: dict[str, Any] = {
                "id": uid,
                "team_id": _TEAM_ID,
                "name": name,
                "real_name": uid,
                "is_bot": uid == self.bot_user_id,
                "deleted": False,
                "profile": {"real_name": uid, "display_name": name},
            }
            user.update(copy.deepcopy(self.users.get(uid, {})))
            return {"ok": True, "user": user}
        if method in {"views.publish", "views.open", "views.push", "views.update"}:
            view = p.get("view")
            if not isinstance(view, dict):
                return {"ok": False, "error": "invalid_arguments"}
            view_id = str(p.get("view_id") or "") if method == "views.update" else ""
            if not view_id:
                view_id = f"V{next(self._view_counter):08d}"
            stored = {
                **copy.deepcopy(view),
                "id": view_id,
                "team_id": _TEAM_ID,
                "hash": f"{time.time():.6f}.{view_id}",
                "app_id": "A0PLATE",
                "bot_id": _BOT_ID,
            }
            self.views[view_id] = stored
            if method == "views.publish":
                if not p.get("user_id"):
                    return {"ok": False, "error": "invalid_arguments"}
                self.home_views[str(p["user_id"])] = stored
            return {"ok": True, "view": stored}
        if method == "conversations.info":
            channel = str(p.get("channel") or "")
            if not channel:
                return {"ok": False, "error": "channel_not_found"}
            name = channel[2:].lower() if channel.startswith("C0") else channel.lower()
            return {
                "ok": True,
                "channel": {
                    "id": channel,
                    "name": name,
                    "is_channel": True,
                    "is_private": False,
                    "is_archived": False,
                    "is_member": True,
                    "context_team_id": _TEAM_ID,
                },
            }
        if method == "conversations.history":
            channel = str(p.get("channel") or "")
            top = [m for m in self._messages.values() if m.channel == channel and not m.thread_ts]
            top.sort(key=lambda m: _ts_key(m.ts), reverse=True)  # Slack returns newest first
            return {"ok": True, "messages": [self._message_json(m) for m in top], "has_more": False}
        if method == "conversations.replies":
            channel, ts = str(p.get("channel") or ""), str(p.get("ts") or "")
            found = [m for m in self._messages.values() if m.channel == channel and ts in {m.ts, m.thread_ts}]
            if not found:
                return {"ok": False, "error": "thread_not_found"}
            found.sort(key=lambda m: _ts_key(m.ts))
            return {"ok": True, "messages": [self._message_json(m) for m in found], "has_more": False}
        if method == "apps.connections.open":
            return {"ok": True, "url": self.socket_mode_url}
        return {"ok": True}
