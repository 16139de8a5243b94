"""Memory of plate-bot's processes, idle and busy, next to the floors they are built on.

Processes (real subprocesses on loopback fakes, real Redis): `plate-bot serve`, `plate-bot worker`
(its main process plus, while busy, the forked work-horse and the helm it runs) and `plate-bot watch`.
Idle: 3 s after start-up. Busy: the peak over sampling every 50 ms while serve takes 50 commands/s for
10 s, while the worker runs three deploys one after the other, and while the watcher follows those
rollouts. Figures: RSS of the main process, and PSS of the whole process tree (shared pages counted
once, so a forked horse costs what it really adds).

Floors, in the same run: a bare Bolt app on waitress (bench/_floor_app.py) for serve, RQ's own `rq worker`
for the worker, and a Python that has imported the `kubernetes` client for the watcher; plus a bare
`python` for scale.

    .venv/bin/python bench/memory.py            # as above
    .venv/bin/python bench/memory.py --quick    # 3 s of load, one deploy
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import PLATE_BOT, ROOT, SECRET, Process, Sandbox, command_request, free_port, header, send, wait_until

MB = 1024 * 1024


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def measure(pid: int) -> tuple[float, float]:
    """(RSS of the main process, PSS of its whole tree) in MB."""
    rss, pss = 0.0, 0.0
    for i, proc in enumerate(tree(pid)):
        with contextlib.suppress(psutil.Error):
            info = proc.memory_full_info()
            pss += getattr(info, "pss", info.rss)
            if i == 0:
                rss = info.rss
    return rss / MB, pss / MB


class Peak(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.rss, self.pss, self.stop = pid, 0.0, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            with contextlib.suppress(psutil.Error):
                rss, pss = measure(self.pid)
                self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)

    def __enter__(self) -> Peak:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv[1:])
    load_s, deploys = (3.0, 1) if args.quick else (10.0, 3)
    header("Memory: RSS (main process) and PSS (process tree), idle and busy", argv)
    import redis

    from bot.app import request_id_for
    from core.store import Store

    sys.path.insert(0, str(ROOT / "bench"))
    import ack_latency

    rows: list[tuple[str, str, float, float]] = []
    with Sandbox(cluster=True) as box:
        store = Store(redis.Redis.from_url(box.redis_url))
        bare = box.start([sys.executable, "-c", "import time; time.sleep(3600)"], "bare")
        kube = box.start([sys.executable, "-c", "import kubernetes, time; time.sleep(3600)"], "kube-floor")
        port = free_port()
        floor = box.start([sys.executable, str(ROOT / "bench" / "_floor_app.py"), str(port), f"{box.slack_url}/api/",
                           SECRET], "floor")  # fmt: skip
        rqw = box.start([str(Path(sys.executable).with_name("rq")), "worker", "--url", box.redis_url, "floor"], "rqw")
        serve, url = box.serve()
        worker = box.worker()
        watch = box.start([PLATE_BOT, "watch", "--metrics-port", "0"], "watch")
        time.sleep(3.0)
        processes = [
            ("python (bare interpreter)", bare),
            ("floor: python + kubernetes client", kube),
            ("floor: bare Bolt app on waitress", floor),
            ("floor: rq worker", rqw),
            ("plate-bot serve", serve),
            ("plate-bot worker", worker),
            ("plate-bot watch", watch),
        ]
        for name, proc in processes:
            rows.append((name, "idle", *measure(proc.pid)))
        floor_url = f"http://127.0.0.1:{port}/slack/events"
        response_url = f"{box.slack_url}/hooks/mem"
        with Peak(floor.pid) as peak:
            ack_latency.load(floor_url, 50, load_s, ack_latency.plate_mix("mem-floor", response_url, floor=True))
        rows.append(("floor: bare Bolt app on waitress", "50 commands/s", peak.rss, peak.pss))
        with Peak(serve.pid) as peak:
            ack_latency.load(url, 50, load_s, ack_latency.plate_mix("mem", response_url))
        rows.append(("plate-bot serve", "50 commands/s", peak.rss, peak.pss))
        # The status jobs queued by that load would keep the worker busy: drop them.
        from core.queue import queue_for

        queue_for(store.redis).empty()
        with Peak(worker.pid) as wpeak, Peak(watch.pid) as tpeak:
            for i in range(deploys):
                trigger = f"mem-deploy-{i}"
                body, headers = command_request(f"deploy stg 1.6.{i}", user="U0BOB", trigger=trigger,
                                                response_url=response_url)  # fmt: skip
                send(url, body, headers)
                rid = request_id_for("T0FAKE", trigger)
                wait_until(lambda rid=rid: store.job_state(f"plate-{rid}").get("ended"), 120, "the deploy")
        rows.append(("plate-bot worker", f"{deploys} deploys", wpeak.rss, wpeak.pss))
        rows.append(("plate-bot watch", "following the rollouts", tpeak.rss, tpeak.pss))
        for proc in (watch, worker, serve, rqw, floor, kube, bare):
            Process.stop(proc)
        box.processes.clear()
    print("| process | state | RSS main (MB) | PSS tree (MB) |")
    print("|---|---|---|---|")
    for name, state, rss, pss in rows:
        print(f"| {name} | {state} | {rss:.0f} | {pss:.0f} |")
    idle = {name: pss for name, state, _rss, pss in rows if state == "idle"}
    print()
    pairs = [
        ("plate-bot serve", "floor: bare Bolt app on waitress"),
        ("plate-bot worker", "floor: rq worker"),
        ("plate-bot watch", "floor: python + kubernetes client"),
    ]
    for plate, base in pairs:
        print(f"{plate} idle: {idle[plate] / idle[base]:.2f}× {base} ({idle[plate]:.0f} vs {idle[base]:.0f} MB PSS)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
