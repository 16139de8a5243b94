"""Slack Web API calls per deploy, and behaviour under a 20-deploy burst against Slack's rate limits.

Part 1, calls per deploy (no rate limits): one `/plate deploy` each of a stg deploy (no approval), a
prod deploy (plan, approval, deploy) and a prod deploy whose helm upgrade fails and is rolled back by
--atomic, end to end through `plate-bot serve` and a `plate-bot worker`. Counted: every call the fake
Slack received, by method. Floor: the messages that end up in Slack (each needs at least one call), so
calls/messages is the cost of keeping them current (edits, retries).

Part 2, burst: 20 environments deployed at once (20 concurrent `/plate deploy envNN`, 4 workers) against
a fake Slack that enforces Slack's published limits per minute (sandbox.slack.SLACK_TIER_LIMITS:
chat.postMessage ~1/s per channel, chat.update 50/min for the workspace). Reported: 429s Slack answered,
whether any reached a user (an error message or a request refused for it), the chat.update rate per
message, and whether every status message ends in its final state.

    .venv/bin/python bench/slack_calls.py            # 20-deploy burst
    .venv/bin/python bench/slack_calls.py --quick    # 5-deploy burst
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Sandbox, click_request, command_request, header, send, wait_until

FINAL = ("succeeded", "failed")


def _deploy(box: Sandbox, url: str, store: Any, text: str, trigger: str, approve: bool) -> str:
    from bot.app import request_id_for

    body, headers = command_request(text, user="U0BOB", trigger=trigger, response_url=f"{box.slack_url}/hooks/u")
    assert send(url, body, headers)[0] == 200
    rid = request_id_for("T0FAKE", trigger)
    if approve:
        wait_until(lambda: (r := store.get(rid)) and r.planned, 60, "the plan")
        body, headers = click_request("plate_approve", rid, user="U0ALICE", response_url=f"{box.slack_url}/hooks/a")
        send(url, body, headers)
        wait_until(lambda: (r := store.get(rid)) and r.status.value == "approved", 10, "the approval")
    env = text.split()[1]
    wait_until(lambda: store.lock_holder(env) is None and store.job_state(f"plate-{rid}").get("ended"), 180, text)
    time.sleep(1.2)  # the reporter's last coalesced edit
    return rid


def _count(state: dict[str, Any]) -> tuple[Counter[str], int]:
    calls = Counter(c["method"] for c in state["calls"] if c["method"] != "auth.test")
    return calls, len(state["messages"])


def per_deploy() -> list[tuple[str, Counter[str], int]]:
    import redis

    from core.store import Store
    from sandbox.helm import set_behaviour

    rows = []
    with Sandbox(cluster=True) as box:
        store = Store(redis.Redis.from_url(box.redis_url))
        _serve, url = box.serve()
        box.worker()
        for name, text, approve, behaviour in (
            ("stg deploy, success (no approval)", "deploy stg 1.5.0", False, {}),
            ("prod deploy, success (plan, approval, deploy)", "deploy prod 1.5.0", True, {}),
            ("prod deploy, helm fails, --atomic rollback", "deploy prod 9.9.9", True,
             {"upgrade": "atomic-rollback", "timeout_seconds": 1}),
        ):  # fmt: skip
            set_behaviour(box.helm_state, **behaviour) if behaviour else None
            box.slack_reset()
            _deploy(box, url, store, text, f"calls-{len(rows)}", approve)
            calls, messages = _count(box.slack_state())
            rows.append((name, calls, messages))
            set_behaviour(box.helm_state, upgrade=None, timeout_seconds=None)
    return rows


def burst(count: int) -> dict[str, Any]:
    import redis

    from core.store import Store

    envs = tuple(f"env{i:02d}" for i in range(count))
    with Sandbox(envs=envs, rate_limits=True, cluster=True) as box:
        store = Store(redis.Redis.from_url(box.redis_url))
        _serve, url = box.serve()
        for _ in range(4):
            box.worker()
        time.sleep(2.0)
        started = time.monotonic()
        import threading

        def one(env: str) -> None:
            body, headers = command_request(f"deploy {env} 1.5.0", user="U0BOB", trigger=f"burst-{env}",
                                            response_url=f"{box.slack_url}/hooks/burst")  # fmt: skip
            send(url, body, headers)

        threads = [threading.Thread(target=one, args=(e,)) for e in envs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        def finished() -> list[dict[str, Any]] | None:
            if any(store.lock_holder(e) for e in envs):
                return None
            state = box.slack_state()
            statuses = [m for m in state["messages"] if m["thread_ts"] and m["text"].startswith("deploy env")]
            done = [m for m in statuses if any(f in m["text"] for f in FINAL)]
            return statuses if len(done) == count else None

        wait_until(finished, 900, "every deploy to finish and report")
        elapsed = time.monotonic() - started
        time.sleep(2.0)
        state = box.slack_state()
    updates: dict[str, list[float]] = defaultdict(list)
    for c in state["calls"]:
        if c["method"] == "chat.update" and c["status"] == 200:
            updates[c["ts"]].append(c["at"])
    peak = 0
    for times in updates.values():
        times.sort()
        peak = max(peak, max(sum(1 for t in times if s <= t < s + 1.0) for s in times))
    statuses = [m for m in state["messages"] if m["thread_ts"] and m["text"].startswith("deploy env")]
    return {
        "deploys": count,
        "elapsed": elapsed,
        "calls": Counter(c["method"] for c in state["calls"] if c["method"] != "auth.test"),
        "429": sum(1 for c in state["calls"] if c["status"] == 429),
        "429_by_method": Counter(c["method"] for c in state["calls"] if c["status"] == 429),
        "user_errors": [t for t in state["hook_texts"] if "ratelimit" in t.lower() or "could not" in t.lower()],
        "refused": sum(1 for m in state["messages"] if not m["thread_ts"] and "cancel" in m["text"].lower()),
        "peak_updates_per_s": peak,
        "edits_per_message": max((len(v) for v in updates.values()), default=0),
        "final": sum(1 for m in statuses if "succeeded" in m["text"]),
        "statuses": len(statuses),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 5-deploy burst")
    args = parser.parse_args(argv[1:])
    count = 5 if args.quick else 20
    header(f"Slack calls per deploy, and a {count}-deploy burst under Slack's rate limits", argv)
    rows = per_deploy()
    print("| deploy | Slack calls | by method | messages in Slack (floor) | calls per message |")
    print("|---|---|---|---|---|")
    for name, calls, messages in rows:
        methods = ", ".join(f"{m} {n}" for m, n in sorted(calls.items()))
        print(f"| {name} | {sum(calls.values())} | {methods} | {messages} | {sum(calls.values()) / messages:.1f} |")
    print()
    b = burst(count)
    calls = b["calls"]
    print(f"burst: {b['deploys']} deploys at once, all reported in {b['elapsed']:.1f} s")
    print(f"- Slack calls: {sum(calls.values())} ({', '.join(f'{m} {n}' for m, n in sorted(calls.items()))})")
    by_method = ", ".join(f"{m} {n}" for m, n in sorted(b["429_by_method"].items())) or "none"
    print(f"- 429s answered by Slack: {b['429']} ({by_method}); retried after Retry-After")
    print(f"- 429s surfaced to users: {len(b['user_errors'])} error replies, {b['refused']} requests refused")
    print(f"- chat.update per message: peak {b['peak_updates_per_s']}/s, at most {b['edits_per_message']} edits")
    print(f"- status messages in their final state: {b['final']}/{b['statuses']} succeeded")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
