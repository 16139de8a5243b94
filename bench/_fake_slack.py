"""FakeSlack in a process of its own for the benchmarks, so its work does not share the measuring
process's GIL. `python bench/_fake_slack.py PORT limits|nolimits`.

Besides the Web API it answers GET /_state (calls, messages and counters as JSON) and POST /_reset.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox import slack as fake


def state(s: fake.FakeSlack) -> dict[str, Any]:
    with s._lock:
        calls = [{"method": c.method, "status": c.status, "at": c.at, "channel": c.params.get("channel"),
                  "ts": c.params.get("ts"), "thread_ts": c.params.get("thread_ts"),
                  "text": str(c.params.get("text", ""))[:160]} for c in s.calls]  # fmt: skip
        messages = [{"channel": m.channel, "ts": m.ts, "thread_ts": m.thread_ts, "edits": m.edits, "text": m.text[:200]}
                    for m in s._messages.values()]  # fmt: skip
        return {"calls": calls, "messages": messages, "rate_limited": s.rate_limited, "hooks": len(s.hooks),
                "hook_texts": [str(b.get("text", ""))[:200] for _n, b in s.hooks]}  # fmt: skip


def main() -> None:
    port, mode = int(sys.argv[1]), sys.argv[2]
    limits = dict(fake.SLACK_TIER_LIMITS) if mode == "limits" else None
    slack = fake.FakeSlack(port=port, rate_limits=limits)
    original = fake._Handler._route

    def route(self: fake._Handler, path: str, query: str, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        if path == "/_state":
            return 200, {"Content-Type": "application/json"}, json.dumps(state(self.server.fake)).encode()
        if path == "/_reset":
            self.server.fake.reset()
            return 200, {"Content-Type": "text/plain"}, b"ok"
        return original(self, path, query, raw)

    fake._Handler._route = route  # type: ignore[method-assign]  # benchmark-only extension of the fake
    slack.start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
