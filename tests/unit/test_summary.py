"""workers.describe: pod readiness, container problems, event excerpts, the status report, age and clip."""

from __future__ import annotations

from typing import Any

import pytest

from core.text import age, clip, parse_time
from workers.describe import (
    container_problems,
    event_excerpt,
    event_time,
    helm_line,
    hpa_line,
    ingress_line,
    is_ready,
    pod_line,
    restarts,
    service_line,
    status_report,
    unready_pods,
)

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def iso(seconds_ago: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(NOW - seconds_ago, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    name: str,
    *,
    ready: bool = True,
    phase: str = "Running",
    statuses: list[dict] | None = None,
    conditions: list[dict] | None = None,
    containers: int = 1,
    init: list[dict] | None = None,
) -> dict:
    conds = conditions if conditions is not None else [{"type": "Ready", "status": "True" if ready else "False"}]
    status: dict[str, Any] = {"phase": phase, "conditions": conds}
    if statuses is not None:
        status["containerStatuses"] = statuses
    if init is not None:
        status["initContainerStatuses"] = init
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": f"c{i}"} for i in range(containers)]},
        "status": status,
    }


def cs(
    name: str = "web", *, ready: bool = False, restarts: int = 0, state: dict | None = None, last: dict | None = None
) -> dict:
    return {
        "name": name,
        "ready": ready,
        "restartCount": restarts,
        "state": state or {"running": {}},
        "lastState": last or {},
    }


PULL_MSG = 'Back-off pulling image "harbor.example.com/plate/web:1.2"'


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (pod("a"), True),
        (pod("a", ready=False), False),
        (pod("a", phase="Succeeded", ready=False), True),
        (pod("a", conditions=[]), False),
        ({"metadata": {"name": "x"}}, False),
        ({"status": None}, False),
        (pod("a", conditions=[{"type": "ContainersReady", "status": "True"}]), False),
    ],
)
def test_is_ready(p: dict, expected: bool) -> None:
    assert is_ready(p) is expected


@pytest.mark.parametrize(
    ("p", "problems"),
    [
        (
            pod("a", statuses=[cs(state={"waiting": {"reason": "ImagePullBackOff", "message": PULL_MSG}})]),
            [f"web waiting: ImagePullBackOff: {PULL_MSG}"],
        ),
        (
            pod(
                "a",
                statuses=[
                    cs(
                        state={"waiting": {"reason": "CrashLoopBackOff"}},
                        restarts=7,
                        last={"terminated": {"reason": "Error", "exitCode": 1}},
                    )
                ],
            ),
            ["web waiting: CrashLoopBackOff"],
        ),
        (
            pod(
                "a",
                statuses=[
                    cs(
                        state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
                        last={"terminated": {"reason": "OOMKilled", "exitCode": 137}},
                    )
                ],
            ),
            ["web waiting: CrashLoopBackOff: back-off 5m0s", "web was OOMKilled"],
        ),
        (
            pod("a", statuses=[cs(state={"running": {}}, last={"terminated": {"reason": "OOMKilled"}})]),
            ["web was OOMKilled"],
        ),
        (
            pod("a", statuses=[cs(state={"terminated": {"reason": "Error", "exitCode": 2}})]),
            ["web terminated: Error (exit 2)"],
        ),
        (pod("a", statuses=[cs(state={"terminated": {"exitCode": 139}})]), ["web terminated: Error (exit 139)"]),
        (pod("a", statuses=[cs(state={"terminated": {"reason": "Completed", "exitCode": 0}})]), []),
        (pod("a", statuses=[cs(state={"waiting": {"reason": "PodInitializing"}})]), []),
        (pod("a", statuses=[cs(state={"waiting": None})]), []),
        (pod("a", statuses=[cs(state={"waiting": {}})]), []),
        (
            pod(
                "a",
                init=[
                    cs(
                        "migrate",
                        state={"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "db" not found'}},
                    )
                ],
                statuses=[cs(state={"waiting": {"reason": "PodInitializing"}})],
            ),
            ['migrate waiting: CreateContainerConfigError: secret "db" not found'],
        ),
        (
            pod(
                "a",
                phase="Pending",
                ready=False,
                conditions=[
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/3 nodes are available: 3 Insufficient memory.",
                    }
                ],
            ),
            ["Unschedulable: 0/3 nodes are available: 3 Insufficient memory."],
        ),
        (pod("a", phase="Pending", ready=False, conditions=[{"type": "PodScheduled", "status": "False"}]), []),
        (
            pod(
                "a",
                phase="Running",
                ready=False,
                conditions=[{"type": "Ready", "status": "False", "reason": "ContainersNotReady", "message": "x"}],
            ),
            [],
        ),
        (
            pod("a", statuses=[cs(state={"waiting": {"reason": "ErrImagePull", "message": "m " * 100}})]),
            ["web waiting: ErrImagePull: " + ("m " * 100)[:48] + " … " + ("m " * 100).strip()[-69:]],
        ),
    ],
    ids=[
        "pull-backoff",
        "crashloop",
        "crashloop-oom",
        "oom-last",
        "terminated",
        "terminated-no-reason",
        "completed",
        "initializing",
        "waiting-null",
        "waiting-empty",
        "init-container",
        "unschedulable",
        "pending-no-reason",
        "running-not-ready",
        "clipped",
    ],
)
def test_container_problems(p: dict, problems: list[str]) -> None:
    assert container_problems(p) == problems


def test_restarts_and_pod_line() -> None:
    p = pod(
        "web-7d9f-x2x4z",
        ready=False,
        containers=2,
        statuses=[
            cs("web", restarts=3, state={"waiting": {"reason": "CrashLoopBackOff"}}),
            cs("sidecar", ready=True, restarts=1),
        ],
    )
    assert restarts(p) == 4
    assert pod_line(p) == (":red_circle: `web-7d9f-x2x4z` 1/2 Running, restarts 4 — web waiting: CrashLoopBackOff")
    fresh = pod("new", phase="Pending", ready=False, containers=3, conditions=[])
    assert pod_line(fresh) == ":red_circle: `new` 0/3 Pending, restarts 0"
    ok = pod("ok", statuses=[cs(ready=True)])
    assert pod_line(ok) == ":large_green_circle: `ok` 1/1 Running, restarts 0"
    assert pod_line({}) == ":red_circle: `?` 0/0 ?, restarts 0"


def test_status_report_orders_unready_first() -> None:
    pods = [pod("b-ok"), pod("z-bad", ready=False), pod("a-ok"), pod("c-bad", ready=False)]
    helm = {
        "name": "plate-web",
        "version": 7,
        "info": {"status": "deployed", "last_deployed": "2023-11-14"},
        "chart": {"metadata": {"name": "plate-web", "version": "1.4.0", "appVersion": "1.4.0"}},
    }
    lines = status_report(helm, pods, [], [], [])
    assert lines[0] == (
        "Release `plate-web` revision 7: *deployed* · chart plate-web-1.4.0 · app 1.4.0 · last deployed 2023-11-14"
    )
    assert lines[1] == "*Pods* 2/4 ready"
    assert [line.split("`")[1] for line in lines[2:]] == ["c-bad", "z-bad", "a-ok", "b-ok"]
    assert [p["metadata"]["name"] for p in unready_pods(pods)] == ["z-bad", "c-bad"]


def test_status_report_truncates_pods_and_lists_others() -> None:
    pods = [pod(f"p{i:02d}") for i in range(18)]
    svc = {
        "metadata": {"name": "web"},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.0.0.1",
            "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}],
        },
    }
    ing = {
        "metadata": {"name": "web"},
        "spec": {"rules": [{"host": "web.example.com"}, {}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"hostname": "lb.example.com"}]}},
    }
    hpa = {
        "metadata": {"name": "web"},
        "spec": {"minReplicas": 2, "maxReplicas": 5},
        "status": {"currentReplicas": 3, "desiredReplicas": 4},
    }
    lines = status_report(None, pods, [svc], [ing], [hpa])
    assert lines[0] == "Release not installed."
    assert lines[1] == "*Pods* 18/18 ready"
    assert len([line for line in lines if line.startswith(":large_green_circle:")]) == 15
    assert "… and 3 more pods" in lines
    assert lines[-3] == "*Services* `web` ClusterIP 10.0.0.1 80/TCP, 53/UDP"
    assert lines[-2] == "*Ingresses* `web` hosts web.example.com, * → 1.2.3.4, lb.example.com"
    assert lines[-1] == "*Autoscalers* `web` 3 replicas (min 2, max 5, desired 4)"


def test_small_lines_defaults() -> None:
    assert service_line({"metadata": {"name": "s"}}) == "`s` ClusterIP"
    assert ingress_line({"metadata": {"name": "i"}}) == "`i` hosts -"
    assert hpa_line({}) == "`?` ? replicas (min 1, max ?, desired ?)"
    assert helm_line({}) == "Release `None` revision None: *?* · chart None-None · app ? · last deployed ?"
    assert status_report(None, [], [], [], []) == ["Release not installed.", "*Pods* 0/0 ready"]


def event(
    reason: str,
    seconds_ago: float | None,
    *,
    kind: str = "Pod",
    name: str = "web-1",
    type_: str = "Warning",
    count: int | None = None,
    message: str = "msg",
    **extra: Any,
) -> dict:
    e: dict[str, Any] = {
        "type": type_,
        "reason": reason,
        "message": message,
        "involvedObject": {"kind": kind, "name": name},
        **extra,
    }
    if seconds_ago is not None:
        e["lastTimestamp"] = iso(seconds_ago)
    if count is not None:
        e["count"] = count
    return e


def test_event_excerpt_newest_first_counts_ages() -> None:
    events = [
        event("BackOff", 3 * 3600, count=12, message=PULL_MSG),
        event("Scheduled", 10, type_="Normal"),
        event("FailedMount", 90, kind="Pod", name="web-2", message='secret "db" not found'),
        event("Unhealthy", 5, kind="Pod", count=1, message="Readiness probe failed:\n  HTTP 503"),
        event("FailedCreate", 2 * 86400 + 5, kind="ReplicaSet", name="web-7d9f", count=2),
    ]
    assert event_excerpt(events, NOW) == [
        "`Unhealthy` pod/web-1 (5s ago): Readiness probe failed: HTTP 503",
        '`FailedMount` pod/web-2 (1m ago): secret "db" not found',
        f"`BackOff` ×12 pod/web-1 (3h ago): {PULL_MSG}",
        "`FailedCreate` ×2 replicaset/web-7d9f (2d ago): msg",
    ]


def test_event_excerpt_all_types_and_limit() -> None:
    events = [event(f"R{i}", i * 60, type_="Normal" if i % 2 else "Warning") for i in range(12)]
    lines = event_excerpt(events, NOW, limit=3, warnings_only=False)
    assert [line.split("`")[1] for line in lines[:3]] == ["R0", "R1", "R2"]
    assert lines[3] == "… 9 older events not shown"
    warn = event_excerpt(events, NOW, limit=3)
    assert [line.split("`")[1] for line in warn[:3]] == ["R0", "R2", "R4"]
    assert warn[3] == "… 3 older events not shown"
    assert len(event_excerpt(events, NOW, limit=6)) == 6  # exactly the limit: no trailer


def test_event_excerpt_series_event_time_and_fallbacks() -> None:
    new_style = {
        "type": "Warning",
        "reason": "BackOff",
        "eventTime": "2023-11-14T22:13:00.123456Z",
        "lastTimestamp": None,
        "series": {"count": 4},
        "involvedObject": {"kind": "Pod", "name": "w"},
        "message": "restarting",
    }
    bare = {"type": "Warning", "metadata": {"creationTimestamp": iso(7200)}}
    first_only = event("Old", None, firstTimestamp=iso(600))
    lines = event_excerpt([bare, first_only, new_style], NOW)
    assert lines == [
        "`BackOff` ×4 pod/w (19s ago): restarting",  # 19.877 s, floored
        "`Old` pod/web-1 (10m ago): msg",
        "`?` /? (? ago): ",
    ]
    assert event_time(bare) == NOW - 7200
    assert event_time({}) == 0.0


def test_event_excerpt_empty() -> None:
    assert event_excerpt([], NOW) == []
    assert event_excerpt([event("Started", 1, type_="Normal")], NOW) == []


@pytest.mark.parametrize(
    ("seconds_ago", "text"),
    [
        (0, "0s"),
        (59, "59s"),
        (60, "1m"),
        (3599, "59m"),
        (3600, "1h"),
        (86399, "23h"),
        (86400, "1d"),
        (30 * 86400, "30d"),
        (-120, "0s"),
    ],
)
def test_age(seconds_ago: int, text: str) -> None:
    assert age(iso(seconds_ago), NOW) == text


@pytest.mark.parametrize("value", [None, "", "yesterday", "2023-13-40T00:00:00Z"])
def test_age_unparseable(value: str | None) -> None:
    assert age(value, NOW) == "?"
    assert parse_time(value) is None


def test_parse_time_offsets() -> None:
    assert parse_time("2023-11-14T22:13:20Z") == NOW
    assert parse_time("2023-11-14T23:13:20+01:00") == NOW


@pytest.mark.parametrize(
    ("text", "limit", "out"),
    [
        ("short", 10, "short"),
        ("a\n b\t\tc  ", 10, "a b c"),
        ("x" * 10, 10, "x" * 10),
        ("x" * 11, 10, "x" * 9 + "…"),
        ("", 5, ""),
        (12345, 3, "12…"),
    ],
)
def test_clip(text: str, limit: int, out: str) -> None:
    result = clip(text, limit)  # type: ignore[arg-type]
    assert result == out and len(result) <= limit


def test_clip_default_limit() -> None:
    assert len(clip("y" * 500)) == 240


def test_clip_keeps_the_end_where_the_reason_is() -> None:
    message = (
        'Failed to pull image "harbor.example.com/plate/web:9.9.9": rpc error: ' + "x" * 300 + ": 401 Unauthorized"
    )
    out = clip(message, 120)
    assert len(out) <= 120 and out.startswith("Failed to pull image") and out.endswith("401 Unauthorized")
    assert " … " in out


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        (
            "Error: UPGRADE FAILED: release plate-web failed, and has been rolled back due to atomic being set: "
            "context deadline exceeded",
            "the new version did not become ready within helm's timeout; "
            "`--atomic` rolled the release back to the previous revision",
        ),
        (
            "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress",
            "another helm operation is still in progress on this release",
        ),
        ("Error: INSTALLATION FAILED: something odd happened\nmore", "INSTALLATION FAILED: something odd happened"),
        ("", "helm gave no reason"),
    ],
)
def test_helm_cause_in_plain_words(stderr: str, expected: str) -> None:
    from workers.describe import helm_cause

    assert helm_cause(stderr) == expected
