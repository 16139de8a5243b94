"""Incident watcher throughput: a replayed stream of Kubernetes watch lines through the watcher's real
pure core, as its loop drives it (workers/watcher/watcher.py: run_once → process → settle → flush).

The stream: ten minutes of two namespaces with 200 broken workloads (crash loops, image pulls failing,
unschedulable pods, failing probes; one incident each), as 50,000 watch lines: the pods first, then
Warning events whose counts grow and pods whose restart counts grow, interleaved. Each line is parsed
(json.loads) and applied to the environment's view (classification: EnvView.apply); after every batch
of 2,000 lines (the watcher's round under a flood) the round's observations are folded into incidents
(Round + on_seen, as Watcher.settle does) and the Slack plan is made within the budget (SlackBudget:
~1 post/s per channel, 40 edits/min) and "sent" (the root message is rendered, the incident records what
Slack would show). The rounds after the flood, every 0.2 s until each incident has its root and
diagnosis, count towards the Slack calls but not the rate. Redis, the Slack HTTP calls and the diagnosis
reads are not included: this measures the core's rate against the cost of merely parsing the stream.

Floor: json.loads of the same 50,000 lines. Target: at least 1/3 of the floor's rate; Slack calls =
one root + one diagnosis per incident + edits bounded by the budget.

    .venv/bin/python bench/watcher_throughput.py            # 50,000 lines, best of 5
    .venv/bin/python bench/watcher_throughput.py --quick    # 5,000 lines, once
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _harness import header  # noqa: E402

from workers.watcher import incidents as core  # noqa: E402
from workers.watcher.classify import EnvView  # noqa: E402
from workers.watcher.render import root_message  # noqa: E402

SPAN = 600.0  # seconds of cluster time the stream covers
WORKLOADS = 200
ENVS = {"prod": "plate-prod", "stg": "plate-stg"}
KINDS = ("crash", "pull", "sched", "probe")
TICK = 0.2  # the watcher's round when idle
BATCH = 2000  # lines per round under a flood (Tuning.batch)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Stream:
    """Deterministic watch lines (seeded), with the stream time of each line."""

    def __init__(self, total: int, t0: float, seed: int = 8) -> None:
        self.rng, self.t0, self.total = random.Random(seed), t0, total
        self.rv = 1000
        self.workloads = [(f"web-{i:03d}", list(ENVS.values())[i % 2], KINDS[i % 4]) for i in range(WORKLOADS)]
        self.restarts: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()

    def _rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def pod(self, name: str, ns: str, kind: str, now: float) -> dict[str, Any]:
        pod = f"{name}-5d8f7c9b4-x{name[-3:]}"
        self.restarts[pod] += 1 if kind == "crash" else 0
        state: dict[str, Any] = {"running": {"startedAt": iso(now - 30)}}
        last: dict[str, Any] = {}
        phase, conditions = "Running", [{"type": "Ready", "status": "False"}]
        if kind == "crash":
            state = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}}
            last = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": iso(now - 5)}}
        elif kind == "pull":
            state = {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}
        elif kind == "sched":
            phase = "Pending"
            conditions = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                           "message": "0/3 nodes are available: 3 Insufficient memory.",
                           "lastTransitionTime": iso(self.t0)}]  # fmt: skip
            state = {"waiting": {"reason": "ContainerCreating"}}
        obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod, "namespace": ns, "uid": f"uid-{pod}", "resourceVersion": self._rv(),
                "labels": {"app.kubernetes.io/instance": name, "pod-template-hash": "5d8f7c9b4"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{name}-5d8f7c9b4",
                                     "uid": f"uid-rs-{name}", "controller": True}],
            },
            "spec": {"containers": [{"name": "web", "image": f"harbor.example.com/plate/{name}:1.5.0"}]},
            "status": {"phase": phase, "conditions": conditions, "containerStatuses": [
                {"name": "web", "ready": False, "restartCount": self.restarts[pod], "state": state,
                 "lastState": last, "image": f"harbor.example.com/plate/{name}:1.5.0"}]},
        }  # fmt: skip
        return obj

    def event(self, name: str, ns: str, kind: str, now: float) -> dict[str, Any]:
        pod = f"{name}-5d8f7c9b4-x{name[-3:]}"
        reason, message = {
            "crash": ("BackOff", f"Back-off restarting failed container web in pod {pod}"),
            "pull": ("Failed", f'Failed to pull image "harbor.example.com/plate/{name}:1.5.0": 401 Unauthorized'),
            "sched": ("FailedScheduling", "0/3 nodes are available: 3 Insufficient memory."),
            "probe": ("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503"),
        }[kind]
        key = f"{pod}.{kind}"
        self.counts[key] += 1
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{pod}.17a{kind}", "namespace": ns, "resourceVersion": self._rv()},
            "involvedObject": {"kind": "Pod", "name": pod, "namespace": ns},
            "reason": reason, "message": message, "type": "Warning", "count": self.counts[key],
            "firstTimestamp": iso(self.t0), "lastTimestamp": iso(now),
        }  # fmt: skip

    def lines(self) -> list[tuple[float, str]]:
        out = []
        for i in range(self.total):
            now = self.t0 + SPAN * i / self.total
            name, ns, kind = self.workloads[i % WORKLOADS] if i < WORKLOADS else self.rng.choice(self.workloads)
            first = i < WORKLOADS
            obj = self.pod(name, ns, kind, now) if first or self.rng.random() < 0.2 else self.event(name, ns, kind, now)
            out.append((now, json.dumps({"type": "ADDED" if first else "MODIFIED", "object": obj})))
        return out


PLURALS = {"Pod": "pods", "Event": "events"}


def run_core(lines: list[tuple[float, str]]) -> tuple[float, Counter[str], int]:
    """The watcher's loop over the stream as fast as it can go (a flood: each round takes a full batch of
    lines, then makes the Slack plan), then the rounds that follow the flood every 0.2 s until every
    incident has its root and diagnosis. Returns (seconds for the flood, Slack effects by kind, incidents)."""
    views = {env: EnvView(env, ns) for env, ns in ENVS.items()}
    by_ns = {ns: views[env] for env, ns in ENVS.items()}
    budget = core.SlackBudget()
    incidents: dict[str, core.Incident] = {}
    effects: Counter[str] = Counter()
    seq = 0

    def no_replicaset(_ns: str, _name: str) -> None:
        return None  # the pod-template-hash naming rule finds the Deployment

    def flush(now: float) -> None:
        nonlocal seq
        for effect, inc in core.next_sends(list(incidents.values()), now, budget):
            if effect in (core.Effect.ROOT, core.Effect.UPDATE):
                root_message(inc)  # what the watcher renders for the post or the edit
            seq += 1
            budget.spend(effect, inc.channel, now)
            incidents[inc.key] = inc.posted(effect, now, f"{int(now)}.{seq:06d}")
            effects[effect.value] += 1

    started = time.perf_counter()
    rnd = core.Round()
    for first in range(0, len(lines), BATCH):
        batch = lines[first : first + BATCH]
        for now, line in batch:
            item = json.loads(line)
            obj = item["object"]
            view = by_ns[obj["metadata"]["namespace"]]
            for obs in view.apply(PLURALS[obj["kind"]], item["type"], obj, now, no_replicaset):
                rnd.add(obs, now)
        for key, seen in rnd.pending():  # Watcher.settle
            incidents[key], _outcome = core.on_seen(
                incidents.get(key), seen, channel="C0INCIDENTS", production=seen.first.env == "prod"
            )
            rnd.done(key)
        flush(batch[-1][0])
    seconds = time.perf_counter() - started
    now = lines[-1][0]
    while any(core.owed(i, now) in (core.Effect.ROOT, core.Effect.DIAGNOSIS) for i in incidents.values()):
        now += TICK
        flush(now)
    return seconds, effects, len(incidents)


def run_floor(lines: list[tuple[float, str]]) -> float:
    started = time.perf_counter()
    for _now, line in lines:
        json.loads(line)
    return time.perf_counter() - started


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 lines, one round")
    parser.add_argument("--secrets", type=int, default=0, help="Secret values the redaction layer knows")
    args = parser.parse_args(argv[1:])
    total, rounds = (5_000, 1) if args.quick else (50_000, 5)
    header(f"Watcher throughput: {total:,} watch lines, {WORKLOADS} broken workloads, best of {rounds}", argv)
    if args.secrets:  # as a watcher that has listed its namespaces' Secrets (every clip redacts with them)
        from core.redact import REDACTOR

        rng = random.Random(3)
        for i in range(args.secrets):
            REDACTOR.set(("secret", "bench", "plate-prod", f"s{i}"), [f"{rng.getrandbits(96):x}Zq{i}"])
        print(f"redaction registry: {args.secrets:,} Secret values ({len(REDACTOR.known):,} forms)")
    lines = Stream(total, t0=time.time() - SPAN).lines()
    best_core, best_floor = float("inf"), float("inf")
    effects: Counter[str] = Counter()
    incidents = 0
    for _ in range(rounds):
        best_floor = min(best_floor, run_floor(lines))
        seconds, effects, incidents = run_core(lines)
        best_core = min(best_core, seconds)
    core_rate, floor_rate = total / best_core, total / best_floor
    minutes = SPAN / 60
    budget = core.SlackBudget()
    bound = budget.update_burst + budget.updates_per_minute * minutes
    print("| pipeline | lines/s | time |")
    print("|---|---|---|")
    print(f"| floor: json.loads only | {floor_rate:,.0f} | {best_floor:.2f} s |")
    print(f"| watcher core: parse + classify + dedup + plan | {core_rate:,.0f} | {best_core:.2f} s |")
    print()
    print(f"ratio: {core_rate / floor_rate:.2f} of the floor's rate (target ≥ 0.33)")
    print(f"incidents: {incidents} (from {total:,} lines)")
    roots, diagnoses, updates = effects["root"], effects["diagnosis"], effects["update"]
    print(f"Slack effects: {sum(effects.values())} = {roots} roots + {diagnoses} diagnosis threads + {updates} edits"
          f" (+ {effects['reopen'] + effects['resolution']} reopen/resolution replies)")  # fmt: skip
    verdict = "OK" if updates <= bound else "EXCEEDED"
    print(f"edits bound by the budget over {minutes:.0f} min of stream: ≤ {bound:.0f} → {verdict}")
    print(f"roots = incidents: {'OK' if roots == incidents else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
