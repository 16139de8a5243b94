"""Approval race: 100 approvers click Approve on the same prod request at the same moment, and Slack
retries 30 of those clicks (X-Slack-Retry-Num). Exactly one approval and one job must come out, and
every click must get an answer.

Per trial: `/plate deploy prod`, the plan job (a `plate-bot worker --burst`), then 130 signed clicks
released together by a barrier against `plate-bot serve` (real Redis). Measured from the release:
- answered: every HTTP answer back (Slack's 3 s clock);
- settled: the request approved, its job queued, the card edited to "Approved", and every losing click
  told ephemerally that it was already approved.
Checked: RQ holds exactly one job for the request, the request has one approval, the card was edited
to "approved" exactly once. Then the deploy runs (another burst worker) so the next trial finds prod free.

Floor: the same 130 clicks at the same moment against a bare Bolt app that only acks (bench/_floor_app.py).

    .venv/bin/python bench/approval_race.py            # 5 trials
    .venv/bin/python bench/approval_race.py --quick    # 1 trial
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    PLATE_BOT,
    ROOT,
    SECRET,
    Sandbox,
    click_request,
    command_request,
    free_port,
    header,
    http_ok,
    ms,
    percentile,
    send,
    wait_until,
)

APPROVERS = [f"U0A{i:03d}" for i in range(100)]
RETRIED = 30
RETRY = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}


def race(url: str, request_id: str, response_url: str) -> tuple[float, list[int], float]:
    """130 clicks released at once; returns (seconds until all answered, statuses, release time)."""
    clicks = [(user, None) for user in APPROVERS] + [(user, RETRY) for user in APPROVERS[:RETRIED]]
    prepared = [(click_request("plate_approve", request_id, user=u, response_url=response_url), h) for u, h in clicks]
    barrier = threading.Barrier(len(prepared) + 1)
    statuses: list[int] = []
    lock = threading.Lock()

    def one(body: bytes, headers: dict[str, str], extra: dict[str, str] | None) -> None:
        barrier.wait()
        try:
            status, _ = send(url, body, headers, extra)
        except OSError:
            status = 0
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one, args=(b, h, x)) for (b, h), x in prepared]
    for t in threads:
        t.start()
    barrier.wait()
    released = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - released, statuses, released


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one trial")
    args = parser.parse_args(argv[1:])
    trials = 1 if args.quick else 5
    header(f"Approval race: 100 concurrent Approve clicks + {RETRIED} Slack retries, {trials} trial(s)", argv)
    import redis

    from bot.app import request_id_for
    from core.requests import Status
    from core.store import Store

    rows = []
    with Sandbox(cluster=True) as box:
        store = Store(redis.Redis.from_url(box.redis_url))
        response_url = f"{box.slack_url}/hooks/race"
        port = free_port()
        box.start([sys.executable, str(ROOT / "bench" / "_floor_app.py"), str(port), f"{box.slack_url}/api/", SECRET],
                  "floor")  # fmt: skip
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 20, "the floor app")
        floor_url = f"http://127.0.0.1:{port}/slack/events"
        _serve, url = box.serve()
        burst = [PLATE_BOT, "worker", "--burst", "--metrics-port", "0"]
        for trial in range(trials):
            floor_answered, floor_statuses, _ = race(floor_url, "no-such-request", response_url)
            box.slack_reset()
            trigger = f"race-{trial}"
            body, headers = command_request(f"deploy prod 1.5.{trial}", user="U0BOB", trigger=trigger,
                                            response_url=response_url)  # fmt: skip
            assert send(url, body, headers)[0] == 200
            rid = request_id_for("T0FAKE", trigger)
            wait_until(lambda rid=rid: store.get(rid) is not None and store.get(rid).message_ts, 10, "the card")
            subprocess.run(burst, env=box.env(), check=True, capture_output=True, timeout=120)
            request = wait_until(lambda rid=rid: (r := store.get(rid)) and r.planned and r, 30, "the plan")
            answered, statuses, released = race(url, rid, response_url)

            def settled(rid: str = rid, card: str = str(request.message_ts)) -> dict | None:
                state = box.slack_state()
                edits = [c for c in state["calls"] if c["method"] == "chat.update" and c["ts"] == card
                         and "approved" in c["text"].lower()]  # fmt: skip
                losers = len(APPROVERS) + RETRIED - 1
                done = store.get(rid).status is Status.APPROVED and edits and state["hooks"] >= losers
                return {"edits": len(edits), "hooks": state["hooks"]} if done else None

            seen = wait_until(settled, 30, "the race to settle")
            settle = time.perf_counter() - released
            time.sleep(0.5)  # anything late (a second edit, a second job) would show now
            seen = settled() or seen
            from core.queue import queue_for

            jobs = [j for j in queue_for(store.redis).job_ids if rid in j]
            approvals = len(store.get(rid).approvals)
            rows.append((trial, floor_answered, floor_statuses, answered, statuses, settle, jobs, approvals, seen))
            subprocess.run(burst, env=box.env(), check=True, capture_output=True, timeout=300)  # the deploy
            wait_until(lambda: store.lock_holder("prod") is None, 30, "prod to be free again")
    print("| trial | floor: all answered | plate: all answered | plate: settled | HTTP 200 | jobs | approvals |"
          " 'approved' card edits | ephemeral answers |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for trial, f_ans, f_st, ans, st, settle, jobs, approvals, seen in rows:
        ok = f"{st.count(200)}/{len(st)} (floor {f_st.count(200)}/{len(f_st)})"
        print(f"| {trial} | {ms(f_ans)} | {ms(ans)} | {ms(settle)} | {ok} | {len(jobs)} | {approvals} "
              f"| {seen['edits']} | {seen['hooks']} |")  # fmt: skip
    answered = [r[3] for r in rows]
    floors = [r[1] for r in rows]
    settles = [r[5] for r in rows]
    print()
    print(
        f"median all-answered: plate {ms(percentile(answered, 50))} vs floor {ms(percentile(floors, 50))} "
        f"({percentile(answered, 50) / percentile(floors, 50):.2f}×); median settled {ms(percentile(settles, 50))}"
    )
    exact = all(len(r[6]) == 1 and r[7] == 1 and r[8]["edits"] == 1 for r in rows)
    print(f"exactly one job, one approval, one 'approved' edit in every trial: {'yes' if exact else 'NO'}")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
