"""`plate-bot` as an operator runs it: real processes, environment variables, loopback fakes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sandbox.signing import post, sign, slash_body
from tests.conftest import SIGNING_SECRET

PLATE_BOT = [sys.executable, "-m", "bot"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


@pytest.fixture
def serve(plate_env: dict, tmp_path: Path):
    """Start `plate-bot serve` with the test environment; yields (base_url, process, env)."""
    procs: list[subprocess.Popen] = []

    def start(**env_overrides: str | None) -> tuple[str, subprocess.Popen]:
        port = free_port()
        env = {**os.environ, "PLATE_DATA_DIR": str(tmp_path / "data")}
        for key, value in env_overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        proc = subprocess.Popen(
            [*PLATE_BOT, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz", proc)
        return base, proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_serve_answers_probes_metrics_and_signed_commands(serve, fake_slack) -> None:
    base, _proc = serve()
    assert get(base + "/healthz") == (200, {"ok": True})
    status, body = get(base + "/readyz")
    assert status == 200 and body == {"redis": True, "slack": True, "draining": False}
    with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
        assert b"plate_commands_total" in resp.read()
    form = slash_body("deploy moon", user="U0BOB")
    status, _h, data = post(base + "/slack/events", form, sign(SIGNING_SECRET, form))
    assert status == 200 and "no environment called `moon`" in data.decode()
    status, _h, _d = post(base + "/slack/events", form, sign("wrong-secret", form))
    assert status == 401
    status, _h, _d = post(base + "/slack/events", form, sign(SIGNING_SECRET, form, timestamp=int(time.time()) - 600))
    assert status == 401
    big = "text=" + "x" * 300_000
    status, _h, _d = post(base + "/slack/events", big, sign(SIGNING_SECRET, big))
    assert status == 413


def test_embedded_serve_runs_a_job_without_any_redis_server(serve, fake_slack, kube_api) -> None:
    """REDIS_URL unset: an embedded redis-server starts and the worker runs in the same process."""
    kube_api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "plate-stg"}})
    base, _proc = serve(REDIS_URL=None)
    form = slash_body("status stg", user="U0BOB", trigger_id="embedded-1")
    status, _h, _d = post(base + "/slack/events", form, sign(SIGNING_SECRET, form))
    assert status == 200
    fake_slack.wait_for(lambda s: any("status stg" in m.text and "succeeded" in m.text for m in s.messages()), 20)


def test_bad_environments_file_stops_with_one_line(plate_env: dict, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("environments:\n  prod:\n    namespace: Plate_Prod\n    release: web\n    chart: c\n")
    env = {**os.environ, "PLATE_CONFIG": str(bad)}
    proc = subprocess.run([*PLATE_BOT, "worker", "--burst"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(bad) in lines[0] and "environments.prod.namespace" in lines[0]


def test_serve_without_slack_credentials_says_what_to_set(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    proc = subprocess.run([*PLATE_BOT, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "SLACK_SIGNING_SECRET" in proc.stderr and "Traceback" not in proc.stderr
