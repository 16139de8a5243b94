"""The one module that owns the Slack Web API client.

Every text and block goes through the redaction layer here, so no caller can post a secret by mistake.
429s (with Retry-After), 5xx, connection errors and timeouts are retried by slack_sdk's retry handlers;
whatever still fails becomes a `SlackError`, never a raw network exception.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from config.settings import Settings
from core.metrics import METRICS
from core.redact import REDACTOR, Redactor

log = logging.getLogger("plate.slack")
GROUP_TTL = 60.0
PROFILE_TTL = 300.0  # users.info answers kept this long: a guest promoted to member waits at most this


class SlackError(Exception):
    """A Slack call failed after retries; `code` is Slack's error string (e.g. `not_in_channel`)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class _CountingRateLimitHandler(RateLimitErrorRetryHandler):
    """slack_sdk's 429 handler (sleeps Retry-After), counting each retried 429 by method."""

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        METRICS.slack_retry(request.url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0])
        super().prepare_for_next_attempt(state=state, request=request, response=response, error=error)


class _TimeoutRetryHandler(RetryHandler):
    """A call whose answer did not come within the timeout is sent once more (slack_sdk retries only
    connection errors, and a read timeout is not one). Updates and reads are idempotent; for a post it
    is at-least-once: Slack may have posted the first one, and without the channels:history scope
    there is no way to look. A rare duplicate beats a lost deploy report (docs/reliability.md)."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return response is None and isinstance(error, TimeoutError)


def make_client(token: str, base_url: str, timeout: int = 10) -> WebClient:
    client = WebClient(token=token, base_url=base_url, timeout=timeout)
    client.retry_handlers = [
        ConnectionErrorRetryHandler(max_retry_count=2),
        _TimeoutRetryHandler(max_retry_count=1),
        _CountingRateLimitHandler(max_retry_count=5),
        ServerErrorRetryHandler(max_retry_count=2),
    ]
    return client


class SlackGateway:
    def __init__(self, client: WebClient, redactor: Redactor = REDACTOR) -> None:
        self.client = client
        self._redact = redactor
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._groups_lock = threading.Lock()
        self._profiles: dict[str, tuple[float, dict[str, Any]]] = {}
        self._team: str | None = None

    @property
    def api_url(self) -> str:
        return str(self.client.base_url)

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackGateway:
        return cls(make_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url))

    def _call(self, method: str, **params: Any) -> dict[str, Any]:
        """Write methods take JSON bodies (blocks stay structured); read methods take form fields."""
        try:
            if method.startswith("chat.post") or method == "chat.update" or method.startswith("views."):
                response = self.client.api_call(method, json=self._redact(params))
            else:
                response = self.client.api_call(method, params=params)
        except SlackApiError as exc:
            code = str(exc.response.get("error", "unknown_error")) if exc.response is not None else "unknown"
            log.warning("slack call failed", extra={"method": method, "error": code})
            METRICS.slack_error(code)
            raise SlackError(code) from None
        except OSError as exc:  # timeouts and refused/reset connections that outlived the retries
            code = "timeout" if isinstance(exc, TimeoutError) else "connection_error"
            log.warning("slack call failed", extra={"method": method, "error": code})
            METRICS.slack_error(code)
            raise SlackError(code) from None
        return dict(response.data) if isinstance(response.data, dict) else {}

    def post(
        self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None, thread_ts: str | None = None
    ) -> str:
        params: dict[str, Any] = {"channel": channel, "text": text, "unfurl_links": False}
        if blocks is not None:
            params["blocks"] = blocks
        if thread_ts:
            params["thread_ts"] = thread_ts
        return str(self._call("chat.postMessage", **params)["ts"])

    def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        params: dict[str, Any] = {"channel": channel, "ts": ts, "text": text}
        params["blocks"] = blocks if blocks is not None else []
        self._call("chat.update", **params)

    def ephemeral(self, channel: str, user: str, text: str) -> None:
        self._call("chat.postEphemeral", channel=channel, user=user, text=text)

    def permalink(self, channel: str, ts: str) -> str | None:
        try:
            return str(self._call("chat.getPermalink", channel=channel, message_ts=ts)["permalink"])
        except (SlackError, KeyError):
            return None

    def publish_home(self, user: str, view: dict[str, Any]) -> None:
        self._call("views.publish", user_id=user, view=view)

    def auth_ok(self) -> bool:
        try:
            return bool(self._call("auth.test").get("ok"))
        except SlackError:
            return False

    def installed_team(self) -> str | None:
        """The bot token's own workspace (auth.test), asked once until it answers."""
        if self._team is None:
            try:
                self._team = str(self._call("auth.test").get("team_id") or "") or None
            except SlackError:
                return None
        return self._team

    def profile(self, user: str) -> dict[str, Any]:
        """users.info of `user` (guest/stranger flags, workspace), cached PROFILE_TTL seconds; SlackError
        when Slack cannot say: callers deciding who may change production fail closed."""
        now = time.monotonic()
        with self._groups_lock:
            cached = self._profiles.get(user)
        if cached and now - cached[0] < PROFILE_TTL:
            return cached[1]
        found = self._call("users.info", user=user).get("user")
        profile = dict(found) if isinstance(found, dict) else {}
        with self._groups_lock:
            if len(self._profiles) > 10_000:  # bounded: a workspace's active people, not every id ever seen
                self._profiles.clear()
            self._profiles[user] = (now, profile)
        return profile

    def members(self, group_ids: list[str]) -> dict[str, frozenset[str]]:
        """Members of Slack user groups, cached for GROUP_TTL seconds (usergroups.users.list is Tier 2)."""
        now = time.monotonic()
        out: dict[str, frozenset[str]] = {}
        for group in group_ids:
            with self._groups_lock:
                cached = self._groups.get(group)
            if cached and now - cached[0] < GROUP_TTL:
                out[group] = cached[1]
                continue
            try:
                users = frozenset(self._call("usergroups.users.list", usergroup=group).get("users", []))
            except SlackError:
                # Fail closed for a group we cannot read, but keep a stale answer if we had one.
                users = cached[1] if cached else frozenset()
            with self._groups_lock:
                self._groups[group] = (now, users)
            out[group] = users
        return out
