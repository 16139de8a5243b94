"""Approval click → worker started → first status message in the thread.

Per trial: `/plate deploy prod` (planned by an idle `plate-bot worker` that keeps running), then U0ALICE
clicks Approve at t0 against `plate-bot serve`. Measured from t0: the worker's job start (the `started`
time the job records when it begins, workers/jobs.py) and the first status message of the job in the
request's thread (the fake Slack's arrival time of that chat.postMessage). The deploy then runs to the
end (a simulated cluster rolls it out) so the next trial finds prod free.

Floor: a bare RQ enqueue → job start on the same Redis: `rq worker` (RQ's own forking worker, idle and
waiting like ours) running a job that only records its start time (bench/_rq_floor.py).

    .venv/bin/python bench/click_to_thread.py            # 10 trials
    .venv/bin/python bench/click_to_thread.py --quick    # 2 trials
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    ROOT,
    Sandbox,
    click_request,
    command_request,
    header,
    ms,
    percentile,
    send,
    wait_until,
)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two trials")
    args = parser.parse_args(argv[1:])
    trials = 2 if args.quick else 10
    header(f"Click → worker start → first thread message, {trials} trials", argv)
    import redis
    from rq import Queue

    from bot.app import request_id_for
    from core.store import Store

    starts, firsts, floors = [], [], []
    with Sandbox(cluster=True) as box:
        conn = redis.Redis.from_url(box.redis_url)
        store = Store(conn)
        response_url = f"{box.slack_url}/hooks/c2t"
        _serve, url = box.serve()
        box.worker()
        box.start([str(Path(sys.executable).with_name("rq")), "worker", "--url", box.redis_url, "--path",
                   str(ROOT / "bench"), "floor"], "rq-floor")  # fmt: skip
        floor_queue = Queue("floor", connection=conn)
        time.sleep(2.0)  # both workers idle on their queues
        for trial in range(trials):
            key = f"bench:floor:{trial}"
            t0 = time.time()
            floor_queue.enqueue("_rq_floor.mark", key)
            started = wait_until(lambda key=key: conn.get(key), 30, "the floor job")
            floors.append(float(started) - t0)

            trigger = f"c2t-{trial}"
            body, headers = command_request(f"deploy prod 1.7.{trial}", user="U0BOB", trigger=trigger,
                                            response_url=response_url)  # fmt: skip
            send(url, body, headers)
            rid = request_id_for("T0FAKE", trigger)
            request = wait_until(lambda rid=rid: (r := store.get(rid)) and r.planned and r, 60, "the plan")
            time.sleep(0.5)  # the plan job's last writes; the worker is idle again
            body, headers = click_request("plate_approve", rid, user="U0ALICE", response_url=response_url)
            t0 = time.time()
            send(url, body, headers)
            job_id = request.job_id
            started = wait_until(lambda job_id=job_id: store.job_state(job_id).get("started"), 60, "the job start")
            starts.append(float(started) - t0)

            def first_message(card: str = str(request.message_ts), t0: float = t0) -> float | None:
                calls = [
                    c
                    for c in box.slack_state()["calls"]
                    if c["method"] == "chat.postMessage" and c["thread_ts"] == card and c["at"] >= t0
                    if c["text"].startswith("deploy prod")
                ]
                return calls[0]["at"] if calls else None

            firsts.append(wait_until(first_message, 60, "the first status message") - t0)
            wait_until(lambda: store.lock_holder("prod") is None, 120, "the deploy to finish")
    print("| measure | p50 | p90 | max |")
    print("|---|---|---|---|")
    for name, values in (("floor: RQ enqueue → job start", floors), ("plate: click → job start", starts),
                         ("plate: click → first status message in the thread", firsts)):  # fmt: skip
        print(f"| {name} | {ms(percentile(values, 50))} | {ms(percentile(values, 90))} | {ms(max(values))} |")
    print()
    print(f"ratio (p50): click → job start {percentile(starts, 50) / percentile(floors, 50):.2f}× the floor; "
          f"click → first message {percentile(firsts, 50) / percentile(floors, 50):.2f}× the floor")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
