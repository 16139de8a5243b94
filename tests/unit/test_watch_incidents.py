"""workers.watcher.incidents: once per incident, not once per event; what Slack is owed; the budget.

The storm test replays more than 10,000 watch events through the pure core (view -> dedup -> planner)
on a simulated clock and checks the Slack calls it would make against the budget."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections import Counter
from typing import Any

import pytest

from workers.watcher.classify import EnvView, Observation, Reason, Workload
from workers.watcher.incidents import (
    Effect,
    Incident,
    Outcome,
    Phase,
    Round,
    SlackBudget,
    due_resolution,
    next_sends,
    on_observation,
    on_seen,
    owed,
)

T0 = 1_800_000_000.0
NS = "plate-prod"
WEB = Workload("Deployment", "web", NS)


def obs(reason: Reason = Reason.IMAGE_PULL, workload: Workload = WEB, detail: str = "web ErrImagePull") -> Observation:
    return Observation("prod", workload, reason, detail, "pod/web-1")


def opened(now: float = T0) -> Incident:
    incident, outcome = on_observation(None, obs(), now, channel="C0INC", production=True)
    assert outcome is Outcome.OPENED
    return incident


def shown(inc: Incident, now: float) -> Incident:
    """As if root and diagnosis were posted and the root shows the current state."""
    return inc.posted(Effect.ROOT, now, "1.0").posted(Effect.DIAGNOSIS, now)


# --- the dedup rule ---------------------------------------------------------------------------------------


def test_first_observation_opens_with_what_where_since_severity() -> None:
    inc = opened()
    assert (inc.key, inc.env, inc.workload, inc.reason) == (
        "prod:Deployment/web:image_pull",
        "prod",
        "Deployment/web",
        Reason.IMAGE_PULL,
    )
    assert (inc.severity, inc.channel, inc.count, inc.phase) == ("critical", "C0INC", 1, Phase.OPEN)
    assert inc.first_seen == inc.last_seen == T0
    early = obs()._replace(since=T0 - 300)
    assert on_observation(None, early, T0, channel="C", production=False)[0].first_seen == T0 - 300
    future = obs()._replace(since=T0 + 300)  # clock skew: never "since" the future
    assert on_observation(None, future, T0, channel="C", production=False)[0].first_seen == T0


DEDUP_CASES = [
    # (state before, seconds later, outcome, count after, phase after, reopened after)
    ("open", 10, Outcome.DEDUPLICATED, 2, Phase.OPEN, 0),
    ("resolved recently", 600, Outcome.REOPENED, 2, Phase.OPEN, 1),
    ("resolved long ago, reported", 4000, Outcome.OPENED, 1, Phase.OPEN, 0),
    ("resolved long ago, resolution unsent", 4000, Outcome.REOPENED, 2, Phase.OPEN, 1),
]


@pytest.mark.parametrize(
    ("state", "later", "outcome", "count", "phase", "reopened"), DEDUP_CASES, ids=[c[0] for c in DEDUP_CASES]
)
def test_dedup_rule(state: str, later: float, outcome: Outcome, count: int, phase: Phase, reopened: int) -> None:
    inc = shown(opened(), T0).evolve(v=7)
    if state.startswith("resolved"):
        inc = inc.resolved(T0 + 100)
        if state.endswith("reported"):
            inc = inc.posted(Effect.RESOLUTION, T0 + 100)
    after, got = on_observation(inc, obs(detail="again"), T0 + 100 + later, channel="C0INC", production=True)
    assert (got, after.count, after.phase, after.reopened) == (outcome, count, phase, reopened)
    assert after.v == 7  # the compare-and-set version carries over, even to a new incident under the key
    if outcome is Outcome.OPENED:
        assert after.root_ts is None and after.first_seen == T0 + 100 + later
    else:
        assert after.root_ts == "1.0" and after.detail == "again"


@pytest.mark.parametrize("state", [None, *(c[0] for c in DEDUP_CASES)])
@pytest.mark.parametrize("times", [1, 2, 7])
def test_a_rounds_fold_equals_deduplicating_event_by_event(state: str | None, times: int) -> None:
    """Watcher.settle folds a round's observations per key (Round + on_seen); the incident it makes must be
    the one that on_observation, applied to each observation in turn, would have made."""
    inc: Incident | None = None
    if state is not None:
        inc = shown(opened(), T0).evolve(v=7)
        if state.startswith("resolved"):
            inc = inc.resolved(T0 + 100)
            if state.endswith("reported"):
                inc = inc.posted(Effect.RESOLUTION, T0 + 100)
    later = dict((c[0], c[1]) for c in DEDUP_CASES).get(state or "", 0)
    other = obs(Reason.CRASH_LOOP, detail="web CrashLoopBackOff")
    stream = [(obs(detail=f"seen {i}"), T0 + 100 + later + i) for i in range(times)] + [(other, T0 + 150 + later)]

    one_by_one: dict[str, Incident] = {} if inc is None else {inc.key: inc}
    firsts: dict[str, Outcome] = {}
    for o, at in stream:
        one_by_one[o.key], outcome = on_observation(one_by_one.get(o.key), o, at, channel="C0INC", production=True)
        firsts.setdefault(o.key, outcome)

    rnd = Round()
    for o, at in stream:
        rnd.add(o, at)
    folded: dict[str, Incident] = {} if inc is None else {inc.key: inc}
    for key, seen in rnd.pending():
        folded[key], outcome = on_seen(folded.get(key), seen, channel="C0INC", production=True)
        assert outcome is firsts[key]
        rnd.done(key)
    assert folded == one_by_one
    assert folded[obs().key].count == (times if firsts[obs().key] is Outcome.OPENED else inc.count + times)  # type: ignore[union-attr]
    assert folded[obs().key].detail == f"seen {times - 1}"
    assert rnd.pending() == []  # all settled: the next round starts empty


def test_a_round_keeps_what_it_could_not_settle() -> None:
    """Redis fails half-way through Watcher.settle: the keys not yet settled stay, and the next round's
    observations add to them (first still decides, all are counted)."""
    rnd = Round()
    crash = obs(Reason.CRASH_LOOP, detail="crash 0")
    rnd.add(obs(detail="pull 0"), T0)
    rnd.add(crash, T0 + 1)
    (first_key, _seen), (second_key, _) = rnd.pending()
    rnd.done(first_key)  # ...then the store raised before the second key
    rnd.add(obs(Reason.CRASH_LOOP, detail="crash 1"), T0 + 2)
    [(key, seen)] = rnd.pending()
    assert key == second_key and (seen.first, seen.times, seen.last.detail) == (crash, 2, "crash 1")


def test_resolution_needs_health_and_quiet() -> None:
    inc = opened()
    assert not due_resolution(inc, healthy=False, now=T0 + 999, quiet=120)
    assert not due_resolution(inc, healthy=True, now=T0 + 119, quiet=120)
    assert due_resolution(inc, healthy=True, now=T0 + 120, quiet=120)
    assert not due_resolution(inc.resolved(T0 + 120), healthy=True, now=T0 + 999, quiet=120)
    assert inc.resolved(T0 + 25 * 60).minutes_open() == 25


# --- what Slack is owed ------------------------------------------------------------------------------------

OWED_CASES: list[tuple[str, Any, Effect | None]] = [
    ("new", lambda i: i, Effect.ROOT),
    ("root claimed by someone", lambda i: i.claimed(Effect.ROOT, T0), None),
    ("claim stale", lambda i: i.claimed(Effect.ROOT, T0 - 61), Effect.ROOT),
    ("root posted", lambda i: i.posted(Effect.ROOT, T0, "1.0"), Effect.DIAGNOSIS),
    ("diagnosed", lambda i: shown(i, T0), None),
    ("counted, too soon", lambda i: shown(i, T0).observed(obs(), T0 + 5), None),
    ("counted, interval over", lambda i: shown(i, T0 - 30).observed(obs(), T0), Effect.UPDATE),
    ("resolved", lambda i: shown(i, T0).resolved(T0), Effect.RESOLUTION),
    ("resolution posted", lambda i: shown(i, T0).resolved(T0).posted(Effect.RESOLUTION, T0), Effect.UPDATE),
    (
        "reopened",
        lambda i: shown(i, T0).resolved(T0).posted(Effect.RESOLUTION, T0).posted(Effect.UPDATE, T0).observed(obs(), T0),
        Effect.REOPEN,
    ),
    (
        "reopen posted",
        lambda i: (
            shown(i, T0)
            .resolved(T0)
            .posted(Effect.RESOLUTION, T0)
            .posted(Effect.UPDATE, T0)
            .observed(obs(), T0)
            .posted(Effect.REOPEN, T0)
        ),
        Effect.UPDATE,
    ),
    ("all shown", lambda i: shown(i, T0).resolved(T0).posted(Effect.RESOLUTION, T0).posted(Effect.UPDATE, T0), None),
]


@pytest.mark.parametrize(("case", "make", "expected"), OWED_CASES, ids=[c[0] for c in OWED_CASES])
def test_owed(case: str, make: Any, expected: Effect | None) -> None:
    assert owed(make(opened()), T0, update_interval=30) is expected


def test_active_until_everything_is_said() -> None:
    inc = shown(opened(), T0)
    assert inc.active
    resolved = inc.resolved(T0)
    assert resolved.active  # the resolution reply is still owed
    assert not resolved.posted(Effect.RESOLUTION, T0).active


def test_storage_round_trip() -> None:
    inc = shown(opened(), T0).observed(obs(), T0 + 3).claimed(Effect.RESOLUTION, T0 + 4)
    assert Incident.from_storage(inc.for_storage()) == inc


# --- the budget and the planner ---------------------------------------------------------------------------


def test_budget_posts_one_per_interval_per_channel_and_edits_from_a_bucket() -> None:
    budget = SlackBudget(post_interval=1.0, updates_per_minute=40, update_burst=10)
    assert budget.allows(Effect.ROOT, "C1", T0)
    budget.spend(Effect.DIAGNOSIS, "C1", T0, messages=3)
    assert not budget.allows(Effect.ROOT, "C1", T0 + 2.9)
    assert budget.allows(Effect.ROOT, "C1", T0 + 3.0)
    assert budget.allows(Effect.ROOT, "C2", T0)  # per channel
    for _ in range(10):
        assert budget.allows(Effect.UPDATE, "C1", T0)
        budget.spend(Effect.UPDATE, "C1", T0)
    assert not budget.allows(Effect.UPDATE, "C1", T0)
    assert not budget.allows(Effect.UPDATE, "C1", T0 + 1.4)
    assert budget.allows(Effect.UPDATE, "C1", T0 + 1.5)  # 40/min refill: one every 1.5 s


def test_plan_orders_roots_first_one_post_per_channel() -> None:
    a = opened(T0 - 10)
    b = opened(T0 - 5).evolve(key="prod:Deployment/b:image_pull", name="b")
    c = opened(T0 - 1).evolve(key="prod:Deployment/c:image_pull", name="c", channel="C0OTHER")
    d = shown(opened(T0 - 100).evolve(key="k-d"), T0 - 100).observed(obs(), T0 - 50)
    chosen = next_sends([d, c, b, a], T0, SlackBudget())
    assert [(e, i.key) for e, i in chosen] == [
        (Effect.ROOT, a.key),  # oldest root of C0INC; b waits for the next slot
        (Effect.ROOT, c.key),  # another channel has its own slot
        (Effect.UPDATE, "k-d"),
    ]


# --- the storm ------------------------------------------------------------------------------------------


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def storm(seed: int = 7) -> list[tuple[float, str, str, dict[str, Any]]]:
    """Ten minutes of a bad rollout across 6 Deployments x 20 pods: pull failures, crash loops, OOMs and
    probe failures; pods' statuses flap and their events' counts climb. `web-0` recovers at minute 8."""
    rng = random.Random(seed)
    problems = {
        "web-0": ("ImagePullBackOff", None),
        "web-1": ("ErrImagePull", None),
        "api-0": ("CrashLoopBackOff", "Error"),
        "api-1": ("CrashLoopBackOff", "OOMKilled"),
        "worker-0": ("CrashLoopBackOff", "Error"),
        "cron-0": (None, None),  # running, but readiness probes fail
    }
    out: list[tuple[float, str, str, dict[str, Any]]] = []
    rv = 0
    restarts: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for step in range(600 * 4):  # every 0.25 s for ten minutes
        now = T0 + step * 0.25
        for _ in range(5):
            deploy = rng.choice(sorted(problems))
            pod = f"{deploy}-{rng.randrange(20):02d}"
            rv += 1
            waiting, last = problems[deploy]
            recovered = deploy == "web-0" and now >= T0 + 480
            if rng.random() < 0.5:
                restarts[pod] += 1 if waiting == "CrashLoopBackOff" and rng.random() < 0.3 else 0
                state = (
                    {"running": {}}
                    if recovered or waiting is None
                    else {
                        "waiting": {"reason": rng.choice([waiting, "ErrImagePull"]) if "Pull" in waiting else waiting}
                    }
                )
                cs = {
                    "name": "c",
                    "restartCount": restarts[pod],
                    "state": state,
                    "ready": recovered,
                    "lastState": {
                        "terminated": {
                            "reason": last,
                            "exitCode": 137 if last == "OOMKilled" else 1,
                            "finishedAt": iso(now),
                        }
                    }
                    if last
                    else {},
                }
                obj = {
                    "metadata": {
                        "name": pod,
                        "namespace": NS,
                        "uid": pod,
                        "resourceVersion": str(rv),
                        "ownerReferences": [{"kind": "ReplicaSet", "name": f"{deploy}-h", "controller": True}],
                        "labels": {"pod-template-hash": "h"},
                    },
                    "status": {
                        "phase": "Running",
                        "containerStatuses": [cs],
                        "conditions": [{"type": "Ready", "status": "True" if recovered else "False"}],
                    },
                }
                out.append((now, "pods", "MODIFIED", obj))
            elif not recovered:
                reason, message = {
                    "ImagePullBackOff": ("Failed", 'Failed to pull image "h/x:9": 401 Unauthorized'),
                    "ErrImagePull": ("BackOff", 'Back-off pulling image "h/x:9"'),
                    "CrashLoopBackOff": ("BackOff", "Back-off restarting failed container c in pod"),
                }.get(waiting or "", ("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503"))
                name = f"{pod}.{reason}"
                counts[name] += 1
                obj = {
                    "metadata": {"name": name, "namespace": NS, "resourceVersion": str(rv)},
                    "involvedObject": {"kind": "Pod", "name": pod, "namespace": NS},
                    "type": "Warning",
                    "reason": reason,
                    "message": message,
                    "count": counts[name],
                    "firstTimestamp": iso(T0),
                    "lastTimestamp": iso(now),
                }
                out.append((now, "events", "MODIFIED", obj))
    return out


def test_storm_makes_one_thread_per_incident_within_the_slack_budget() -> None:
    events = storm()
    assert len(events) >= 10_000
    view = EnvView("prod", NS)
    incidents: dict[str, Incident] = {}
    budget = SlackBudget(post_interval=1.0, updates_per_minute=40, update_burst=10)
    calls: list[tuple[float, Effect, str, int]] = []  # (time, effect, incident key, messages)
    outcomes: Counter[Outcome] = Counter()

    def no_rs(_ns: str, _name: str) -> None:
        return None

    def send(now: float) -> None:
        for key, inc in list(incidents.items()):
            workload = Workload(inc.kind, inc.name, inc.namespace)
            if due_resolution(inc, view.healthy(workload, inc.reason, no_rs), now, quiet=60):
                incidents[key] = inc.resolved(now)
        for effect, inc in next_sends(list(incidents.values()), now, budget, update_interval=30):
            messages = 3 if effect is Effect.DIAGNOSIS else 1
            calls.append((now, effect, inc.key, messages))
            budget.spend(effect, inc.channel, now, messages)
            incidents[inc.key] = inc.posted(effect, now, f"ts-{inc.key}" if effect is Effect.ROOT else None)

    view.sync("pods", [], T0, no_rs)  # listed (empty) before the storm starts
    next_send = T0
    for now, plural, etype, obj in events:
        for o in view.apply(plural, etype, obj, now, no_rs):
            inc, outcome = on_observation(incidents.get(o.key), o, now, channel="C0INC", production=True)
            incidents[o.key] = inc
            outcomes[outcome] += 1
        while next_send <= now:
            send(next_send)
            next_send += 0.5
    end = events[-1][0]
    while next_send <= end + 600:  # after the storm: everything owed is sent (coalesced, not dropped)
        send(next_send)
        next_send += 0.5

    keys = set(incidents)
    assert keys == {
        "prod:Deployment/web-0:image_pull",
        "prod:Deployment/web-1:image_pull",
        "prod:Deployment/api-0:crash_loop",
        "prod:Deployment/api-1:oom_killed",
        "prod:Deployment/worker-0:crash_loop",
        "prod:Deployment/cron-0:probe_failed",
    }
    assert outcomes[Outcome.OPENED] == 6 and outcomes[Outcome.DEDUPLICATED] > 1000
    roots = Counter(key for _t, effect, key, _n in calls if effect is Effect.ROOT)
    assert roots == Counter({key: 1 for key in keys})  # exactly one thread per incident
    assert Counter(key for _t, e, key, _n in calls if e is Effect.DIAGNOSIS) == roots
    assert [key for _t, e, key, _n in calls if e is Effect.RESOLUTION] == ["prod:Deployment/web-0:image_pull"]
    # Slack's limits: ~1 message per second in the channel, chat.update under 50 in any minute.
    posts = [(t, n) for t, e, _k, n in calls if e.posts]
    for (t1, n1), (t2, _n2) in itertools.pairwise(posts):
        assert t2 - t1 >= 1.0 * n1 - 1e-9
    edits = [t for t, e, _k, _n in calls if e is Effect.UPDATE]
    assert max(sum(1 for u in edits if t <= u < t + 60) for t in edits) <= 50
    # The whole storm, in Slack calls: 6 roots + 18 diagnosis replies + 1 resolution + bounded edits.
    total = sum(n for _t, _e, _k, n in calls)
    minutes = (end + 600 - T0) / 60
    assert total <= 6 * 4 + 1 + 10 + 40 * minutes
    assert len(edits) <= 6 * (minutes * 60 / 30 + 3)  # at most one edit per incident per 30 s, plus changes
    # Coalesced, not dropped: every root ends up showing its incident's final count and state.
    for inc in incidents.values():
        assert (inc.shown_count, inc.shown_phase) == (inc.count, inc.phase.value), inc.key
    print(f"storm: {len(events)} events -> {len(incidents)} incidents, {total} Slack calls ({len(edits)} edits)")
