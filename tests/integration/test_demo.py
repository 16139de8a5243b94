"""`plate-bot demo`, the README's first command, run as a newcomer runs it: its own process, its own
embedded Redis and loopback fakes. Its output must show every scene, the incident channel's included
(issue 18), read cleanly (one short headline per scene, no tracebacks, error records or internal errors)
and end in time."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

# The variables a test run sets that the demo must not inherit (it brings its own Slack, Redis, cluster).
INHERITED = re.compile(r"^(SLACK_|PLATE_|REDIS_URL$|KUBECONFIG$|HELM_BIN$|FAKE_HELM_)")


@pytest.fixture(scope="module")
def demo() -> tuple[str, float]:
    """(what the demo printed, how long it took)."""
    env = {k: v for k, v in os.environ.items() if not INHERITED.match(k)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=110
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr, took


def scene(output: str, headline: str) -> str:
    """The text of the scene under `headline` (up to the next scene or command)."""
    start = output.index(headline)
    ends = [i for mark in ("\n--- #", "\n$ ") if (i := output.find(mark, start + len(headline))) != -1]
    return output[start : min(ends, default=len(output))]


@pytest.mark.slow
def test_the_demo_shows_every_scene_and_reads_cleanly(demo: tuple[str, float]) -> None:
    output, took = demo
    headlines = [line for line in output.splitlines() if line.startswith("--- #")]
    assert all(len(line) <= 100 for line in headlines), headlines  # one short headline per scene
    for part in ("Traceback", '"level": "ERROR"', ":boom:"):  # no crash, no error record, no internal error
        assert part not in output, part
    assert output.rstrip().endswith("Every message above went through the fake Slack Web API over HTTP.")
    assert took < 90, f"the demo took {took:.0f}s"  # under a minute on a laptop; loaded CI gets some slack


@pytest.mark.slow
def test_the_demo_shows_the_incident_channel(demo: tuple[str, float]) -> None:
    output, _took = demo
    # The failing production deploy, then the watcher's incident in #incidents: root and diagnosis thread.
    assert output.index("production deploy that fails") < output.index("--- #C0INCIDENTS · incident opened")
    opened = scene(output, "--- #C0INCIDENTS · incident opened")
    assert "\n[critical] prod/plate-web: Crash loop — Deployment/plate-web\n" in opened  # the root, as first posted
    first = re.search(r"seen (once|\d+ times)", opened)
    assert first is not None
    assert "*Diagnosis of `Deployment/plate-web` in `prod/plate-web`: Crash loop*" in opened
    assert "*Pods (0/1 ready)*" in opened and "CrashLoopBackOff" in opened  # pod states
    assert "*Warning events*" in opened and "Back-off restarting failed container" in opened  # events
    assert "*Last log lines*" in opened and "panic: config: required key" in opened  # the crashed container
    assert "*What changed recently*" in opened and "plate-bot request `" in opened  # the deploy that did it
    assert "[Request rollback]" in opened
    # The counter edit on recurrence: the same root, edited, not posted again.
    recurs = scene(output, "--- #C0INCIDENTS · the crash recurs")
    assert "[critical] prod/plate-web: Crash loop — Deployment/plate-web (edited)" in recurs
    seen = re.search(r"seen (\d+) times", recurs)
    assert seen is not None and int(seen[1]) > (1 if first[1] == "once" else int(first[1].split()[0])), recurs
    assert output.count("[critical] prod/plate-web: Crash loop") == 2  # one root, shown as posted and edited
    # The Request rollback button pressed: the card appears where prod's rollbacks are approved.
    assert "$ U0BOB clicks Request rollback in the incident thread" in output
    card = scene(output, "--- #C0DEPLOYS · rollback from the incident")
    assert "*rollback `prod/plate-web`* requested by <@U0BOB>" in card
    assert "*Asked from:* <https://fake.slack.com/archives/C0INCIDENTS/" in card
    assert "rollback prod/plate-web: succeeded" in card
    # The resolution reply, once plate-web is healthy again, in the same thread.
    resolved = scene(output, "--- #C0INCIDENTS · resolved once plate-web is healthy again")
    assert ":rewind: Rollback requested by <@U0BOB>: <https://fake.slack.com/archives/C0DEPLOYS/" in resolved
    assert ":white_check_mark: Resolved after" in resolved and "is healthy again" in resolved
    # The scenes come in the order things happened.
    order = [
        "--- #C0INCIDENTS · incident opened",
        "--- #C0INCIDENTS · the crash recurs",
        "$ U0BOB clicks Request rollback",
        "--- #C0DEPLOYS · rollback from the incident",
        "--- #C0INCIDENTS · resolved once",
    ]
    positions = [output.index(mark) for mark in order]
    assert positions == sorted(positions)


@pytest.mark.slow
def test_the_demo_shows_images_checked_before_approval(demo: tuple[str, float]) -> None:
    """Issue 17's scenes: a tag that does not exist fails the plan before anyone is asked, naming the tags
    that do; the production card shows the image pinned by digest with Harbor's scan summary."""
    output, _took = demo
    missing = scene(output, "a tag that does not exist: the plan fails before approval")
    assert "`harbor.example.com/plate/plate-web:1.6.0` does not exist in the registry" in missing
    assert "the newest tags are `9.9.9`, `1.5.0`, `1.4.0`, `1.3.0`" in missing and "[Approve]" not in missing
    planned = scene(output, "production deploy: planned, image pinned by digest")
    assert re.search(r"`harbor\.example\.com/plate/plate-web:1\.5\.0` @ `sha256:[0-9a-f]{12}…`", planned), planned
    assert "Trivy v0.50.1 3h ago: 0 critical, 2 high, 7 medium · signed" in planned
    assert "deploying by digest" in planned and "[Approve]" in planned
    verify = scene(output, "harbor-verify: a failing image pull")
    assert "credentials rejected" in verify and "*First broken link:* SecretStore `openbao-harbor`" in verify
