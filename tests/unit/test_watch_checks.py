"""workers.watcher.checks and render: Argo CD's Procedure 4, "what changed recently", and the Slack shapes."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from core.messages import REQUEST_ROLLBACK
from workers.watcher.checks import (
    argocd_cause,
    argocd_report,
    attributed,
    change_lines,
    latest_change,
    matching_credentials,
    normalize_repo,
    selfheal_on,
)
from workers.watcher.classify import Observation, Reason, Workload
from workers.watcher.incidents import Effect, on_observation
from workers.watcher.render import Diagnosis, diagnosis_messages, resolution_reply, root_message

NOW = 1_800_000_000.0
REPO = "https://git.example.com/platform/plate-web.git"


def application(
    *,
    repo: str = REPO,
    revision: str = "v1.4.0",
    automated: dict[str, Any] | None = None,
    retry: dict[str, Any] | None = None,
    history: int | None = 5,
    sync: str = "Synced",
    health: str = "Healthy",
    operation: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "source": {"repoURL": repo, "targetRevision": revision, "path": "helm/plate-web"},
        "destination": {"namespace": "plate-prod"},
        "syncPolicy": {"automated": automated if automated is not None else {"prune": True, "selfHeal": True}},
    }
    if retry is not None:
        spec["syncPolicy"]["retry"] = retry
    if history is not None:
        spec["revisionHistoryLimit"] = history
    status: dict[str, Any] = {"sync": {"status": sync}, "health": {"status": health}}
    if operation:
        status["operationState"] = operation
    if conditions:
        status["conditions"] = conditions
    return {"metadata": {"name": "plate-web-prod", "namespace": "argocd"}, "spec": spec, "status": status}


CREDS = [{"name": "repo-plate-web", "kind": "repository", "url": REPO}]
CONSERVATIVE = {"limit": 3, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "3m"}}

# The seed's Argo CD failure modes, as Argo CD reports them.
FIXTURES = {
    "bad repoURL": (
        application(
            repo="https://git.example.com/platform/plate-wbe.git",
            sync="Unknown",
            retry=CONSERVATIVE,
            conditions=[
                {
                    "type": "ComparisonError",
                    "message": "Failed to load target state: failed to generate manifest for source 1 of 1: rpc "
                    "error: code = NotFound desc = repository not found",
                }
            ],
        ),
        CREDS,
        "the repoURL is wrong or the repository does not exist",
        ":information_source: no repository credentials match",
    ),
    "missing credentials": (
        application(
            sync="Unknown",
            retry=CONSERVATIVE,
            conditions=[
                {
                    "type": "ComparisonError",
                    "message": "rpc error: code = Unknown desc = authentication required: Repository not found.",
                }
            ],
        ),
        [],
        "Argo CD cannot authenticate to the repository",
        ":x: no repository credentials match `https://git.example.com/platform/plate-web.git`",
    ),
    "bad revision": (
        application(
            revision="release/9.9",
            sync="OutOfSync",
            retry=CONSERVATIVE,
            operation={
                "phase": "Failed",
                "message": "ComparisonError: rpc error: code = Unknown desc = Unable to resolve 'release/9.9' to a "
                "commit SHA",
                "startedAt": "2026-01-01T00:00:00Z",
            },
        ),
        CREDS,
        "the targetRevision does not exist in the repository",
        ":white_check_mark: repository Secret `repo-plate-web` (repository) matches this URL",
    ),
    "degraded": (
        application(
            health="Degraded",
            retry=CONSERVATIVE,
            operation={
                "phase": "Failed",
                "message": "one or more objects failed to apply",
                "syncResult": {
                    "revision": "4f2c9a1e0b7d",
                    "resources": [
                        {"kind": "Deployment", "name": "plate-web", "status": "Synced"},
                        {
                            "kind": "Job",
                            "name": "db-migrate",
                            "status": "SyncFailed",
                            "hookPhase": "Failed",
                            "message": "Job has reached the specified backoff limit",
                        },
                    ],
                },
            },
        ),
        CREDS,
        None,
        ":x: `Job/db-migrate`: Job has reached the specified backoff limit",
    ),
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_argocd_procedure_4_on_the_seed_failures(name: str) -> None:
    app, secrets, cause, expected_line = FIXTURES[name]
    lines = argocd_report(app, secrets, production=True)
    text = "\n".join(lines)
    assert lines[0].startswith("*Argo CD Application* `plate-web-prod`: sync *")
    if cause:
        assert f":point_right: Likely cause: {cause}" in text
    else:
        assert "Likely cause" not in text
    assert expected_line in text
    assert "sync policy: automated, prune on, selfHeal on" in text
    assert "retry limit 3 (backoff duration 10s, factor 2, maxDuration 3m)" in text
    assert "revisionHistoryLimit 5: 5 revision(s) kept to roll back to" in text


def test_argocd_policy_warnings() -> None:
    text = "\n".join(
        argocd_report(application(revision="HEAD", automated={}, retry=None, history=None), CREDS, production=True)
    )
    assert ":warning: targetRevision `HEAD`: production follows a moving branch" in text
    assert ":warning: no retry policy" in text
    assert "revisionHistoryLimit 10 (default)" in text
    assert "prune off, selfHeal off" in text
    aggressive = "\n".join(argocd_report(application(retry={"limit": -1}), CREDS, production=True))
    assert ":warning: retry limit -1 — production prefers a conservative retry" in aggressive
    staging = "\n".join(argocd_report(application(retry={"limit": 10}, revision="main"), CREDS, production=False))
    assert ":warning:" not in staging
    manual = application()
    del manual["spec"]["syncPolicy"]["automated"]
    assert "sync policy: manual" in "\n".join(argocd_report(manual, CREDS, production=False))
    assert "is not an http(s), ssh or oci URL" in "\n".join(
        argocd_report(application(repo="plate-web"), [], production=False)
    )


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://git.example.com/org/app.git", "https://git.example.com/org/app"),
        ("git@git.example.com:org/app.git", "https://git.example.com/org/app/"),
        ("ssh://git@git.example.com/org/app", "HTTPS://GIT.example.com/org/app.git"),
    ],
)
def test_repo_urls_compare_by_host_and_path(a: str, b: str) -> None:
    assert normalize_repo(a) == normalize_repo(b)


def test_credentials_match_exactly_or_by_template_prefix() -> None:
    secrets = [
        {"name": "exact", "kind": "repository", "url": "https://git.example.com/org/app"},
        {"name": "template", "kind": "repo-creds", "url": "https://git.example.com/org"},
        {"name": "other", "kind": "repository", "url": "https://git.example.com/org/other"},
        {"name": "prefix-but-repository", "kind": "repository", "url": "https://git.example.com"},
    ]
    found = matching_credentials("git@git.example.com:org/app.git", secrets)
    assert [s["name"] for s in found] == ["exact", "template"]


def test_argocd_cause_and_selfheal() -> None:
    assert argocd_cause(["everything fine"]) is None
    assert argocd_cause(["x509: certificate", "could not read Username for 'https://git'"]).startswith("Argo CD cannot")
    assert selfheal_on(application()) and not selfheal_on(application(automated={"prune": True}))
    assert not selfheal_on(None)


# --- what changed recently --------------------------------------------------------------------------------


def rev(n: int, ago: float, description: str) -> dict[str, Any]:
    updated = dt.datetime.fromtimestamp(NOW - ago, dt.UTC).isoformat().replace("+00:00", "Z")
    return {
        "revision": n,
        "updated": updated,
        "status": "deployed",
        "chart": "plate-web-0.3.0",
        "app_version": "1.5.0",
        "description": description,
    }


def test_change_lines() -> None:
    ours = latest_change([rev(3, 7200, "Upgrade complete"), rev(4, 600, "plate-bot 0a1b2c3d4e5f by U0BOB")])
    assert ours is not None and (ours.revision, ours.request, ours.user) == (4, "0a1b2c3d4e5f", "U0BOB")
    [line] = change_lines(ours, NOW, "https://fake.slack.com/archives/C0DEPLOYS/p1")
    assert line == (
        ":rotating_light: Helm revision 4 (plate-web-0.3.0, deployed) 10m ago: plate-bot request `0a1b2c3d4e5f` "
        "by <@U0BOB> — <https://fake.slack.com/archives/C0DEPLOYS/p1|request thread>"
    )
    [manual] = change_lines(latest_change([rev(2, 120, "Upgrade complete")]), NOW)
    assert manual.endswith("2m ago: Upgrade complete (not made by plate-bot)")
    [old] = change_lines(latest_change([rev(2, 7300, "plate-bot 0a1b2c3d4e5f by U0BOB")]), NOW)
    assert old.startswith(":information_source: Nothing deployed in the last hour. Latest: Helm revision 2")
    assert change_lines(latest_change([]), NOW) == [":information_source: No helm release history."]


def test_a_pending_or_rolled_back_revision_is_attributed_to_the_job_running_then() -> None:
    """helm writes plate-bot's description when the upgrade ends: while it waits, the revision says
    "Preparing upgrade", and an --atomic rollback "Rollback to 1". The job's change record names them."""
    pending = latest_change([rev(1, 7200, "plate-bot 0a1b2c3d4e5f by U0BOB"), rev(2, 5, "Preparing upgrade")])
    record = {"request": "9f8e7d6c5b4a", "requester": "U0CAROL", "started": NOW - 30, "deadline": NOW + 600}
    ours = attributed(pending, [record])
    assert ours is not None and (ours.revision, ours.request, ours.user) == (2, "9f8e7d6c5b4a", "U0CAROL")
    [line] = change_lines(ours, NOW)
    assert line.endswith("5s ago: plate-bot request `9f8e7d6c5b4a` by <@U0CAROL>")
    outside = {**record, "started": NOW - 3600, "ended": NOW - 3000}  # a job that ended before helm stamped it
    assert attributed(pending, [outside]) == pending and attributed(None, [record]) is None


# --- Slack shapes -----------------------------------------------------------------------------------------


def test_root_message_says_what_where_since_and_severity_then_resolution() -> None:
    o = Observation(
        "prod",
        Workload("Deployment", "plate-web", "plate-prod"),
        Reason.IMAGE_PULL,
        "web ImagePullBackOff",
        "pod/plate-web-1",
        NOW - 600,
    )
    inc, _ = on_observation(None, o, NOW, channel="C0INC", production=True)
    text, blocks = root_message(inc)
    rendered = json.dumps(blocks)
    assert text == "[critical] prod: Image pull failing — Deployment/plate-web"
    for part in (
        "*Image pull failing* in `prod`: `Deployment/plate-web` (namespace `plate-prod`)",
        "`pod/plate-web-1`: web ImagePullBackOff",
        "Severity *critical*",
        "seen once",
    ):
        assert part in rendered
    inc = inc.observed(o, NOW + 60).posted(Effect.ROOT, NOW, "1.0").resolved(NOW + 1200)
    text, blocks = root_message(inc)
    assert text.startswith("[resolved] prod:") and "Resolved after 30 min" in json.dumps(blocks)
    assert "seen 2 times" in json.dumps(blocks)
    assert resolution_reply(inc).startswith(":white_check_mark: Resolved after 30 min: `Deployment/plate-web`")


def test_diagnosis_messages_are_bounded_and_offer_the_rollback_button() -> None:
    d = Diagnosis("Diagnosis of `Deployment/plate-web`")
    d.add("Pods", ["x" * 200] * 40)
    d.add("Empty", [])
    d.logs = [("pod/web", "line\n" * 2000 + "```boom```"), ("pod/b", ""), ("pod/c", "never shown")]
    d.change, d.rollback_env = ["Helm revision 4"], "prod"
    body, logs, change = diagnosis_messages(d)
    assert len(body[0]) <= 2900 and "characters cut" in body[0] and "*Empty*" not in body[0]
    assert "'''boom'''" in logs[0] and "```boom```" not in logs[0] and "never shown" not in logs[0]
    assert len(logs[0]) <= 2900
    button = change[1][1]["elements"][0]
    assert (button["action_id"], button["value"], button["text"]["text"]) == (
        REQUEST_ROLLBACK,
        "prod",
        "Request rollback",
    )
    assert len(diagnosis_messages(Diagnosis("only a title"))) == 1
