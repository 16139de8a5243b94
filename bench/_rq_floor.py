"""The floor job of bench/click_to_thread.py: it only records when a worker started it."""

from __future__ import annotations

import time

from rq import get_current_job


def mark(key: str) -> None:
    job = get_current_job()
    assert job is not None
    job.connection.set(key, repr(time.time()), ex=600)
