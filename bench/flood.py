"""A flood: 200 slash commands in about a second into `plate-bot serve` (issue 12's acceptance figure).

Half are `deploy stg 1.5.0` from different people (stg needs no approval, so they all race for stg's
lock), half `status stg`. Sent open loop in ten bursts of 20 simultaneous commands, 100 ms apart, on fresh
connections; latency is counted from each command's scheduled send time. Reported: ack p50/p99/max,
acks slower than Slack's 3 s, and deploy cards posted (target 1: the others are answered "busy" in the
ack, never shown a card and then cancelled).

    .venv/bin/python bench/flood.py             # 3 floods, the figures of each
    .venv/bin/python bench/flood.py --rounds 1
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis
from _harness import Sandbox, command_request, header, ms, send
from ack_latency import Check, Result

BURST = 20


def flood(url: str, count: int, make: Callable[[int], tuple[bytes, dict[str, str], Check]]) -> Result:
    """`count` commands in bursts of BURST sent at once, a burst every 100 ms (open loop)."""
    result, lock = Result(), threading.Lock()
    start = time.perf_counter() + 0.2

    def one(i: int) -> None:
        body, headers, ok = make(i)
        scheduled = start + (i // BURST) * 0.1
        time.sleep(max(scheduled - time.perf_counter(), 0.0))
        try:
            status, data = send(url, body, headers)
            outcome = "" if status == 200 and ok(data) else f"HTTP {status}: {data[:60]!r}"
        except Exception as exc:  # a refused or timed-out connection is an error to report, not to raise
            outcome = type(exc).__name__
        with lock:
            result.sent += 1
            if outcome:
                result.errors[outcome] += 1
            else:
                result.latencies.append(time.perf_counter() - scheduled)

    with ThreadPoolExecutor(max_workers=BURST * 2) as pool:
        list(pool.map(one, range(count)))
    return result


def flood_mix(run: str, response_url: str):
    def make(i: int) -> tuple[bytes, dict[str, str], Check]:
        text = "deploy stg 1.5.0" if i % 2 == 0 else "status stg"
        body, headers = command_request(text, user=f"U0F{i:03d}", trigger=f"{run}-{i}", response_url=response_url)
        return body, headers, lambda data: data == b"" or b"is busy" in data

    return make


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args(argv[1:])
    header(f"Flood: {args.count} commands in about a second, {args.rounds} rounds", argv)
    print("| round | sent | p50 | p99 | max | acks over 3 s | errors | deploy cards (target 1) |")
    print("|---|---|---|---|---|---|---|---|")
    with Sandbox() as box:
        response_url = f"{box.slack_url}/hooks/flood"
        _serve, url = box.serve()
        flood(url, 40, flood_mix("warm", response_url))  # imports, auth.test, first connections
        for n in range(1, args.rounds + 1):
            box.slack_reset()
            redis.Redis.from_url(box.redis_url).flushdb()  # stg's lock and requests from the last round
            result = flood(url, args.count, flood_mix(f"r{n}-{time.time_ns()}", response_url))
            time.sleep(2.0)  # the cards and their edits land after the acks
            calls = box.slack_state()["calls"]
            cards = sum(1 for c in calls if c["method"] == "chat.postMessage" and c["text"].startswith("deploy stg"))
            p50, p99, top = result.row()
            slow = sum(1 for x in result.latencies if x > 3.0)
            errors = sum(result.errors.values())
            figures = (result.sent, ms(p50), ms(p99), ms(top), slow, errors, cards)
            print(f"| {n} | " + " | ".join(str(f) for f in figures) + " |")
            for what, count in result.errors.most_common(3):
                print(f"errors in round {n}: {count} × {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
