"""core.home (App Home: the release record jobs keep, the view) and the pure half of core.metrics
(the stats-hash fields a job adds, and how the shared collector turns them into Prometheus samples)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from config.environments import Environment, parse_config
from core.home import MAX_BLOCKS, home_view, image_tag, operation_entry, release_record
from core.metrics import ClusterState, Metrics, SharedCollector, cluster_exporter, job_increments
from core.requests import PAUSE_AUTOSYNC, Request, Vote, new_request

T0 = 1_700_000_000.0
CONFIG = parse_config(
    {
        "environments": {
            "stg": {"namespace": "plate-stg", "release": "plate-web", "chart": "charts/plate-web"},
            "prod": {
                "namespace": "plate-prod",
                "release": "plate-web",
                "chart": "charts/plate-web",
                "approvals_required": 1,
                "approvers": ["U0ALICE"],
            },
        }
    }
)
ENVS: list[Environment] = list(CONFIG.environments.values())


def status(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "plate-web",
        "version": 3,
        "info": {"status": "deployed", "last_deployed": "2023-11-14T22:13:20.123456789Z", "description": ""},
        "chart": {"metadata": {"name": "plate-web", "version": "1.4.0", "appVersion": "1.4.0"}, "values": {}},
        "config": {},
    }
    for key, value in over.items():
        base[key] = {**base[key], **value} if isinstance(base.get(key), dict) else value
    return base


@pytest.mark.parametrize(
    ("config", "chart_values", "expected"),
    [
        ({"image": {"tag": "1.5.0"}}, {"image": {"tag": "1.0.0"}}, "1.5.0"),  # --set-string image.tag wins
        ({}, {"image": {"tag": "1.0.0"}}, "1.0.0"),  # the chart's default
        ({"image": {"tag": ""}}, {"image": {"tag": ""}}, "1.4.0"),  # empty: the appVersion
        ({"image": "flat-string"}, {}, "1.4.0"),  # an odd values shape does not break Home
    ],
)
def test_image_tag_precedence(config: dict, chart_values: dict, expected: str) -> None:
    s = status(config=config)
    s["chart"]["values"] = chart_values
    assert image_tag(s) == expected


def test_release_record_keeps_only_named_fields_and_who_deployed_from_the_description() -> None:
    s = status(
        info={"description": "plate-bot 0123456789ab by U0BOB"},
        config={"image": {"tag": "1.5.0"}, "db": {"password": "hunter2"}},
    )
    record = release_record(s, previous=None, now=T0)
    assert record == {
        "installed": True,
        "revision": 3,
        "status": "deployed",
        "chart": "plate-web-1.4.0",
        "app_version": "1.4.0",
        "image_tag": "1.5.0",
        "deployed_at": pytest.approx(1_700_000_000.123, abs=0.01),
        "deployed_by": "U0BOB",
        "request": "0123456789ab",
        "seen_at": T0,
    }
    assert "hunter2" not in json.dumps(record)  # user-supplied values never reach Redis or Slack


@pytest.mark.parametrize(
    ("previous", "expected"),
    [
        ({"revision": 3, "deployed_by": "U0CAROL", "request": "abc"}, "U0CAROL"),  # same revision: keep
        ({"revision": 2, "deployed_by": "U0CAROL", "request": "abc"}, None),  # a newer revision, by hand
        (None, None),
    ],
)
def test_release_record_carries_the_deployer_only_for_the_same_revision(previous: Any, expected: Any) -> None:
    record = release_record(status(info={"description": "Upgrade complete"}), previous=previous, now=T0)
    assert record["deployed_by"] == expected


def test_release_record_of_a_missing_release() -> None:
    assert release_record(None, previous={"revision": 3}, now=T0) == {"installed": False, "seen_at": T0}


def pending(rid: str = "r1", env: str = "prod", **over: Any) -> Request:
    request = new_request(
        rid, verb="deploy", env=env, requester="U0BOB", channel="C0DEPLOYS", now=T0, ttl=900,
        approvals_required=1, args={"image_tag": "1.5.0"},
    )  # fmt: skip
    return request.evolve(**over)


def snapshot(**over: Any) -> dict[str, Any]:
    base = {"releases": {}, "locks": {}, "operations": {}, "pending": []}
    return {**base, **over}


def buttons(view: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["action_id"], e["value"]) for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]]


def text(view: dict[str, Any]) -> str:
    return json.dumps(view["blocks"], ensure_ascii=False)


@pytest.mark.parametrize(
    ("viewer", "approver_of", "req", "expected"),
    [
        ("U0ALICE", {"prod"}, pending(), [("plate_approve", "r1"), ("plate_reject", "r1")]),
        ("U0EVE", set(), pending(), []),  # not an approver
        ("U0BOB", {"prod"}, pending(), []),  # the requester never gets buttons, even when an approver
        ("U0ALICE", {"prod"}, pending(approvals=(Vote(user="U0ALICE", at=T0),), approvals_required=2), []),  # voted
        ("U0ALICE", {"prod"}, pending(planned=False), []),  # no buttons before the plan
        ("U0ALICE", {"stg"}, pending(), []),  # approver of another environment
        (
            "U0ALICE",
            {"prod"},
            pending(offers=(PAUSE_AUTOSYNC,)),
            [("plate_approve_pause", "r1"), ("plate_approve", "r1"), ("plate_reject", "r1")],
        ),
    ],
)
def test_approve_buttons_only_for_who_may_approve(
    viewer: str, approver_of: set[str], req: Request, expected: list[tuple[str, str]]
) -> None:
    view = home_view(ENVS, snapshot(pending=[req]), viewer=viewer, approver_of=approver_of, now=T0)
    assert view["type"] == "home"
    assert buttons(view) == expected
    if viewer == "U0BOB" or "prod" in approver_of:
        assert "*deploy* `1.5.0` requested by <@U0BOB>" in text(view)
    else:  # neither approver nor requester: how many wait, not who asked for what
        assert "requested by" not in text(view) and "1 request waiting for prod's approvers." in text(view)


def test_view_shows_release_lock_and_operations_per_environment() -> None:
    release = release_record(status(info={"description": "plate-bot abc by U0BOB"}), previous=None, now=T0)
    lock = {"request": "r9", "verb": "deploy", "user": "U0BOB", "since": T0, "state": "running"}
    op = operation_entry(
        pending(), outcome="failed", summary="helm upgrade failed: " + "x" * 400, ended_at=T0, link="https://l/p1"
    )
    snap = snapshot(releases={"prod": release}, locks={"prod": lock}, operations={"prod": [op]})
    rendered = text(home_view(ENVS, snap, viewer="U0EVE", approver_of=set(), now=T0, notice="Nope."))
    assert ":warning: Nope." in rendered
    assert "*revision 3* · `plate-web-1.4.0` · image `1.4.0` · deployed" in rendered and "by <@U0BOB>" in rendered
    assert ":lock: Locked by `r9`: deploy requested by <@U0BOB>, running since <!date^1700000000^" in rendered
    assert ":x: *deploy* by <@U0BOB>" in rendered and "<https://l/p1|thread>" in rendered
    assert len(op["summary"]) <= 160  # one long failure cannot blow the section's 3000 characters
    assert "No release seen yet: `/plate status stg` records it." in rendered  # stg: nothing recorded yet
    assert rendered.index("*stg*") < rendered.index("*prod*")  # the environments file's order


def test_view_never_exceeds_slacks_block_limit() -> None:
    many = [pending(f"r{i}", planned=True) for i in range(40)]
    envs = [ENVS[1].model_copy(update={"name": f"env{i}"}) for i in range(30)]
    snap = snapshot(pending=[r.evolve(env=f"env{i % 30}") for i, r in enumerate(many)])
    view = home_view(envs, snap, viewer="U0ALICE", approver_of={e.name for e in envs}, now=T0)
    assert len(view["blocks"]) <= MAX_BLOCKS
    assert "No room for" in text(view) and "`/plate status <env>`" in text(view)


# --- metrics shared through Redis ----------------------------------------------------------------------


def render(
    stats: dict[str, float] | Exception, depth: int = 0, *, exporting: bool = True, **state: Any
) -> dict[tuple[str, frozenset], float]:
    def read() -> ClusterState:
        if isinstance(stats, Exception):
            raise stats
        return ClusterState(stats=stats, queued=depth, **state)

    registry = CollectorRegistry()
    registry.register(SharedCollector(read, lambda: exporting))
    page = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(page) for s in f.samples
    }


@pytest.mark.parametrize(
    ("seconds", "bucket"), [(0.2, "1.0"), (1.0, "1.0"), (1.01, "5.0"), (1799, "1800.0"), (5000, "+Inf")]
)
def test_job_increments_land_in_one_bucket(seconds: float, bucket: str) -> None:
    fields = job_increments("deploy", "succeeded", seconds)
    assert fields == {
        "jobs|deploy|succeeded": 1.0,
        "job_seconds_sum|deploy": seconds,
        "job_seconds_count|deploy": 1.0,
        f"job_seconds_bucket|deploy|{bucket}": 1.0,
    }


def test_collector_turns_stats_into_counters_and_cumulative_histograms() -> None:
    stats: dict[str, float] = {}
    for kind, outcome, secs in [("deploy", "succeeded", 3), ("deploy", "failed", 40), ("status", "succeeded", 0.5)]:
        for key, value in job_increments(kind, outcome, secs, {"job_slack_errors|ratelimited": 2}).items():
            stats[key] = stats.get(key, 0.0) + value
    page = render(stats, depth=4)
    assert page[("plate_jobs_total", frozenset({("kind", "deploy"), ("outcome", "failed")}))] == 1
    assert page[("plate_job_seconds_bucket", frozenset({("kind", "deploy"), ("le", "5.0")}))] == 1
    assert page[("plate_job_seconds_bucket", frozenset({("kind", "deploy"), ("le", "60.0")}))] == 2
    assert page[("plate_job_seconds_bucket", frozenset({("kind", "deploy"), ("le", "+Inf")}))] == 2
    assert page[("plate_job_seconds_count", frozenset({("kind", "deploy")}))] == 2
    assert page[("plate_job_seconds_sum", frozenset({("kind", "deploy")}))] == 43
    assert page[("plate_job_slack_errors_total", frozenset({("code", "ratelimited")}))] == 6
    assert page[("plate_queue_depth", frozenset())] == 4 and page[("plate_stats_up", frozenset())] == 1


def test_collector_shows_workers_approvals_locks_and_last_success() -> None:
    stats = {"last_success|prod|plate-web|deploy": 1_796_000_000.0, **job_increments("deploy", "succeeded", 3)}
    page = render(stats, 2, running=1, workers=3, busy=1, pending=4, locks={"prod": 2, "stg": 1})
    one = frozenset()
    assert [page[(n, one)] for n in ("plate_queue_depth", "plate_jobs_running", "plate_workers", "plate_workers_busy",
                                     "plate_pending_approvals")] == [2, 1, 3, 1, 4]  # fmt: skip
    assert page[("plate_locks_held", frozenset({("env", "prod")}))] == 2
    labels = frozenset({("env", "prod"), ("app", "plate-web"), ("kind", "deploy")})
    assert page[("plate_last_success_timestamp_seconds", labels)] == 1_796_000_000.0
    assert not [name for name, _ in page if name.endswith("_created")]


def test_collector_exports_nothing_while_this_process_is_not_the_exporter() -> None:
    assert render({"jobs|deploy|succeeded": 1.0}, 3, exporting=False) == {}


@pytest.mark.parametrize(
    ("mode", "process", "embedded", "exports"),
    [
        ("auto", "serve", True, True),
        ("auto", "serve", False, False),
        ("auto", "worker", False, False),
        ("auto", "worker", True, False),
        ("auto", "watch", False, None),
        ("always", "worker", False, True),
        ("never", "watch", False, False),
    ],
)
def test_one_process_exports_the_cluster_wide_series(mode: str, process: str, embedded: bool, exports: Any) -> None:
    assert cluster_exporter(mode, process=process, embedded=embedded) is exports


def test_a_process_shows_its_runtime_and_build_and_no_created_series() -> None:
    page = generate_latest(Metrics().registry).decode()
    names = {s.name for f in text_string_to_metric_families(page) for s in f.samples}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "python_info", "plate_build_info"} <= names
    assert "python_gc_collections_total" in names and not [n for n in names if n.endswith("_created")]


def test_collector_says_so_when_redis_is_away_instead_of_failing_the_scrape() -> None:
    page = render(ConnectionError("redis down"))
    assert page[("plate_stats_up", frozenset())] == 0
    assert ("plate_queue_depth", frozenset()) not in page
