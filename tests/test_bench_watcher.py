"""bench/watcher_throughput.py keeps measuring the watcher's real core: its quick run must end with one
root per incident and edits within the budget's bound (the figures themselves are not asserted: speed is
for the benchmark to print, not for a test to time)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_run_reports_one_root_per_incident_within_the_budget() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "watcher_throughput.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "incidents: 200 (from 5,000 lines)" in out
    assert "= 200 roots + 200 diagnosis threads + " in out
    assert "→ OK" in out and "roots = incidents: OK" in out
