"""Slash-command ack latency of `plate-bot serve` (waitress + Bolt + Redis) under open-loop load.

For each rate (20, 50, 100 requests/s) the generator sends signed /plate commands on fresh connections
at fixed intervals for the duration, whatever the answers do (open loop: a slow answer does not slow the
sender, and latency is counted from the scheduled send time, so queueing shows). Half the commands are
`status stg` (policy, one Redis round trip creating a request, ack; then a card, a job enqueue and a card
edit after the ack), half `deploy moon` (a usage error answered in the ack).

Floor: a bare Bolt app on the same stack (bench/_floor_app.py: waitress with 8 threads, Bolt's WSGI
adapter and signature check) whose handler only acks, measured in the same run at the same rates, the
two alternating in six slices per rate so a change in the machine's load affects both alike.
Target: plate p99 within 1.5x the floor's, no errors, p99 far under Slack's 3 s at 100/s.

    .venv/bin/python bench/ack_latency.py            # 30 s per rate and server
    .venv/bin/python bench/ack_latency.py --quick    # 3 s per rate: a smoke run
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    ROOT,
    SECRET,
    Sandbox,
    command_request,
    free_port,
    header,
    http_ok,
    ms,
    percentile,
    send,
    wait_until,
)

RATES = (20, 50, 100)
SLICES = 6  # per rate: floor and plate alternate, 1/6 of the duration at a time


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    sent: int = 0

    def merge(self, other: Result) -> None:
        self.latencies += other.latencies
        self.errors.update(other.errors)
        self.sent += other.sent

    def row(self) -> tuple[float, float, float]:
        return percentile(self.latencies, 50), percentile(self.latencies, 99), max(self.latencies, default=0.0)


Check = Callable[[bytes], bool]


def load(url: str, rate: int, duration: float, make: Callable[[int], tuple[bytes, dict[str, str], Check]]) -> Result:
    result = Result()
    lock = threading.Lock()
    total = int(rate * duration)
    pool = ThreadPoolExecutor(max_workers=max(32, rate))
    start = time.perf_counter() + 0.1

    def one(i: int, scheduled: float) -> None:
        body, headers, ok = make(i)
        try:
            status, data = send(url, body, headers)
            outcome = "" if status == 200 and ok(data) else f"HTTP {status}: {data[:60]!r}"
        except Exception as exc:  # a refused or timed-out connection is an error to report, not to raise
            outcome = type(exc).__name__
        took = time.perf_counter() - scheduled
        with lock:
            if outcome:
                result.errors[outcome] += 1
            else:
                result.latencies.append(took)

    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        pool.submit(one, i, scheduled)
        result.sent += 1
    pool.shutdown(wait=True)
    return result


def plate_mix(
    run: str, response_url: str, *, floor: bool = False
) -> Callable[[int], tuple[bytes, dict[str, str], Check]]:
    """The same requests for both servers; the floor acks everything with an empty body."""

    def make(i: int) -> tuple[bytes, dict[str, str], Check]:
        if i % 2 == 0:
            body, headers = command_request("status stg", user=f"U0L{i % 50:03d}", trigger=f"{run}-{i}",
                                            response_url=response_url)  # fmt: skip
            return body, headers, lambda data: data == b""
        body, headers = command_request("deploy moon", user="U0BOB", trigger=f"{run}-{i}", response_url=response_url)
        return body, headers, (lambda data: data == b"") if floor else (lambda data: b"moon" in data)

    return make


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s per rate instead of 30 s")
    parser.add_argument("--duration", type=float, default=None)
    args = parser.parse_args(argv[1:])
    duration = args.duration or (3.0 if args.quick else 30.0)
    header(f"Slash-command ack latency: open loop, {duration:.0f} s per rate", argv)
    rows = []
    with Sandbox() as box:
        response_url = f"{box.slack_url}/hooks/bench"
        port = free_port()
        floor = box.start([sys.executable, str(ROOT / "bench" / "_floor_app.py"), str(port), f"{box.slack_url}/api/",
                           SECRET], "floor")  # fmt: skip
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 20, "the floor app")
        floor_url = f"http://127.0.0.1:{port}/slack/events"
        _serve, plate_url = box.serve()
        # Warm both (imports, auth.test, first Redis connections).
        load(floor_url, 20, 1.0, plate_mix("warm-floor", response_url, floor=True))
        load(plate_url, 20, 1.0, plate_mix("warm-plate", response_url))
        for rate in RATES:
            # Alternate floor and plate in SLICES slices so a shift in the machine's load hits both alike.
            base, plate = Result(), Result()
            box.slack_reset()
            for i in range(SLICES):
                base.merge(
                    load(floor_url, rate, duration / SLICES, plate_mix(f"f{rate}-{i}", response_url, floor=True))
                )
                plate.merge(load(plate_url, rate, duration / SLICES, plate_mix(f"p{rate}-{i}", response_url)))
            time.sleep(1.0)  # let the last cards and edits land before counting them
            state = box.slack_state()
            cards = sum(1 for c in state["calls"] if c["method"] == "chat.postMessage" and c["status"] == 200)
            rows.append((rate, base, plate, cards))
        floor.stop()
    print("| rate | server | sent | p50 | p99 | max | errors |")
    print("|---|---|---|---|---|---|---|")
    for rate, base, plate, _cards in rows:
        for name, r in (("floor (bare Bolt, ack only)", base), ("plate-bot serve", plate)):
            p50, p99, top = r.row()
            errors = sum(r.errors.values())
            print(f"| {rate}/s | {name} | {r.sent} | {ms(p50)} | {ms(p99)} | {ms(top)} | {errors} |")
    print()
    print("| rate | p50 ratio | p99 ratio (target ≤ 1.5) | plate p99 vs Slack's 3 s | cards posted / status commands |")
    print("|---|---|---|---|---|")
    for rate, base, plate, cards in rows:
        (b50, b99, _), (p50, p99, _) = base.row(), plate.row()
        print(f"| {rate}/s | {p50 / b50:.2f}× | {p99 / b99:.2f}× | {p99 / 3.0 * 100:.1f}% of 3 s "
              f"| {cards} / {(plate.sent + 1) // 2} |")  # fmt: skip
    for rate, base, plate, _ in rows:
        for name, r in (("floor", base), ("plate", plate)):
            for what, count in r.errors.most_common(3):
                print(f"errors at {rate}/s ({name}): {count} × {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
