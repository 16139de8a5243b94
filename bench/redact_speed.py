"""Redaction speed: `core.redact` on the texts it sees, with registries of realistic sizes.

Every Slack post, every log record and every `clip` of cluster text goes through the redaction layer, and
the watcher clips on its hot path. Measured, per call (median of repeated runs):

* a typical 2 KB diagnosis message (pod lines, warning events, a crashed container's last log lines)
  with no secret in it (the common case), and the same text with five secrets planted;
* a 200-character warning event message (what `clip` redacts in the watcher's classification);
* each with the exact-value registry empty, and holding the values of 30, 300 and 3,000 Secret keys
  (each registered with its base64, URL-encoded and JSON-escaped forms);
* the time to rebuild the registry's matcher after a Secret changes.

Floor: `str.replace` of one value over the same text (the least any exact-value redaction could cost).

    .venv/bin/python bench/redact_speed.py
    .venv/bin/python bench/redact_speed.py --quick
    PYTHONPATH=<dir with the old core/redact.py> .venv/bin/python bench/redact_speed.py --legacy   # before
"""

from __future__ import annotations

import argparse
import random
import statistics
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _harness import header  # noqa: E402

from bot import redact  # noqa: E402

EVENT = (
    'Failed to pull image "harbor.example.com/plate/plate-web:1.5.0": rpc error: code = Unknown desc = failed to '
    "pull and unpack image: failed to resolve reference: unexpected status from HEAD request: 401 Unauthorized"
)
LINES = [
    "*Diagnosis of `Deployment/plate-web` in `prod`: Crash loop*",
    "*Pods (0/2 ready)*",
    "`plate-web-7d9f8b6c5-x2x4z` 0/1 CrashLoopBackOff, restarts 7 (last exit 1, 2m ago), node ip-10-0-3-17",
    "`plate-web-7d9f8b6c5-q8k2m` 0/1 CrashLoopBackOff, restarts 6 (last exit 1, 3m ago), node ip-10-0-1-42",
    "*Warning events*",
    "`BackOff` ×14 pod/plate-web-7d9f8b6c5-x2x4z (40s ago): Back-off restarting failed container web in pod",
    "`Unhealthy` ×3 pod/plate-web-7d9f8b6c5-x2x4z (2m ago): Readiness probe failed: HTTP probe failed with "
    "statuscode: 503",
    f"`Failed` ×2 pod/plate-web-7d9f8b6c5-q8k2m (5m ago): {EVENT}",
    "*Last log lines* `plate-web-7d9f8b6c5-x2x4z/web` (previous run)",
    "2026-11-27T10:41:07.512Z INFO  starting plate-web 1.5.0 (commit 3f9c2a1e8b7d6c5f4e3d2c1b0a9f8e7d6c5b4a39)",
    "2026-11-27T10:41:07.733Z INFO  connecting to postgres://db.plate-prod.svc:5432/plate?sslmode=require",
    '2026-11-27T10:41:08.104Z WARN  password authentication failed for user "plate"; retrying in 500ms',
    "2026-11-27T10:41:08.611Z ERROR redis: dial tcp 10.0.4.12:6379: connect: connection refused",
    "2026-11-27T10:41:09.001Z ERROR pulled image harbor.example.com/plate/plate-web@sha256:"
    "9b2d3c4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff001",
    "2026-11-27T10:41:09.002Z FATAL panic: config: missing PLATE_FEATURE_FLAGS (see /etc/plate/config.yaml)",
    "goroutine 1 [running]: main.main() /src/cmd/plate-web/main.go:42 +0x1d3",
]


def typical_text() -> str:
    text = "\n".join(LINES)
    while len(text) < 2048:
        text += "\n" + LINES[len(text) % len(LINES)]
    return text[:2048]


def secret_value(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits + "-_.!") for _ in range(rng.randint(16, 40)))


def per_call(fn: Callable[[], object], repeat: int, number: int) -> float:
    """Median seconds per call over `repeat` runs of `number` calls."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - started) / number)
    return statistics.median(runs)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--legacy", action="store_true", help="the old API: Redactor.add only, no sources")
    args = parser.parse_args(argv[1:])
    header("Redaction speed: core.redact per call", argv)
    repeat, number = (3, 200) if args.quick else (7, 1000)
    rng = random.Random(12)
    clean = typical_text()
    planted = [secret_value(rng) for _ in range(5)]
    dirty = clean
    for i, value in enumerate(planted):
        cut = (i + 1) * len(clean) // 6
        dirty = dirty[:cut] + f" token={value} " + dirty[cut:]
    event = EVENT[:200]
    print(f"texts: {len(clean):,} chars (no secret), {len(dirty):,} chars (5 secrets), {len(event)} chars (event)")
    print()
    print("| registry | 2 KB, no secret | 2 KB, 5 secrets | 200-char event | matcher rebuild |")
    print("|---|---|---|---|---|")
    floor = per_call(lambda: clean.replace(planted[0], redact.MASK), repeat, number)
    for secrets in (0, 30, 300, 3000):
        r = redact.Redactor()
        values = planted + [secret_value(rng) for _ in range(max(0, secrets - len(planted)))] if secrets else []
        rebuild = 0.0
        if args.legacy:
            r.add(*values)
        elif values:
            for i in range(0, len(values), 10):  # Secrets of ten keys each
                r.set(("secret", "ctx", "ns", f"s{i}"), values[i : i + 10])
            started = time.perf_counter()
            r.set(("secret", "ctx", "ns", "rotated"), [secret_value(rng)])
            rebuild = time.perf_counter() - started
        n = number if secrets < 3000 or not args.legacy else max(10, number // 50)
        a = per_call(lambda r=r: r(clean), repeat, n)
        b = per_call(lambda r=r: r(dirty), repeat, n)
        c = per_call(lambda r=r: r(event), repeat, n)
        assert all(v not in r(dirty) for v in planted[: min(secrets, 5)])
        rebuilt = f"{rebuild * 1000:.1f} ms" if values and not args.legacy else "-"
        print(f"| {secrets:,} Secret keys | {a * 1e6:,.0f} µs | {b * 1e6:,.0f} µs | {c * 1e6:,.1f} µs | {rebuilt} |")
    print()
    print(f"floor: one str.replace over 2 KB: {floor * 1e6:.2f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
