"""`plate-bot serve --socket-mode` as a real process against a loopback Socket Mode endpoint (a minimal
WebSocket server) and the fake Slack Web API."""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

from sandbox.signing import slash_body
from sandbox.slack import FakeSlack
from sandbox.socketmode import FakeSocketMode
from tests.integration.procs import PLATE_BOT, processes, serving_url, stderr_of, up
from tests.waiting import wait_until


def env_of(plate_env: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in plate_env.items() if k.isupper()}


def slash_payload(text: str, user: str = "U0BOB") -> dict[str, str]:
    """A slash command as Socket Mode delivers it: the same fields as the HTTP form, as JSON."""
    return dict(urllib.parse.parse_qsl(slash_body(text, user=user, trigger_id=f"sm-{text}")))


def test_socket_mode_acks_over_the_socket_posts_through_the_api_and_closes_on_sigterm(
    plate_env: dict[str, Any], fake_slack: FakeSlack, tmp_path: Path
) -> None:
    with (
        FakeSocketMode() as socket_mode,
        processes({**env_of(plate_env), "SLACK_APP_TOKEN": "xapp-1-A0PLATE-0000-test"}, tmp_path) as procs,
    ):
        fake_slack.socket_mode_url = socket_mode.url
        serve = procs.start("serve", "--socket-mode", "--host", "127.0.0.1", "--port", "0")
        base = serving_url(serve)
        up(base + "/healthz", serve)  # probes and metrics stay on HTTP
        socket_mode.wait_connected()
        assert fake_slack.calls_to("apps.connections.open")

        usage = socket_mode.send("slash_commands", slash_payload("deploy moon"))
        assert "no environment called `moon`" in socket_mode.wait_for_ack(usage)["payload"]["text"]
        status = socket_mode.send("slash_commands", slash_payload("status stg"))
        assert not socket_mode.wait_for_ack(status).get("payload")  # an empty ack: the card follows
        wait_until(lambda: fake_slack.messages("C0DEPLOYS"), what="the card through the Web API")
        assert "status stg" in fake_slack.messages("C0DEPLOYS")[0].text

        os.kill(serve.pid, signal.SIGTERM)
        assert serve.wait(10) == 0, stderr_of(serve)
        socket_mode.wait_closed()  # the connection is closed, not left to time out


def test_socket_mode_without_app_token_stops_with_one_line(plate_env: dict[str, Any]) -> None:
    env = {**os.environ, **env_of(plate_env)}
    env.pop("SLACK_APP_TOKEN", None)
    proc = subprocess.run([*PLATE_BOT, "serve", "--socket-mode"], env=env, capture_output=True, text=True, timeout=60)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "SLACK_APP_TOKEN" in lines[0] and "Traceback" not in proc.stderr
