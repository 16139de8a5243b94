"""PURE. Short, safe text from what the cluster says: redacted before it is shortened, and its times.

Every line that quotes the cluster (events, statuses, helm's stderr) goes through `clip`: redaction
first, because a secret cut in two by the ellipsis would no longer match its registered value.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from core.redact import REDACTOR

MESSAGE_LIMIT = 240


@lru_cache(maxsize=8192)
def parse_time(value: str | None) -> float | None:
    """RFC 3339 -> epoch seconds. Cached: a watch stream repeats the same second-resolution stamps."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def age(value: str | None, now: float) -> str:
    ts = parse_time(value)
    if ts is None:
        return "?"
    delta = max(0, int(now - ts))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if delta >= size:
            return f"{delta // size}{unit}"
    return f"{delta}s"


def clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Redact, then shorten from the middle: the start names the operation, the end usually says why it
    failed. Redacting first matters: a secret cut in two by the ellipsis no longer matches its value."""
    return _clip(str(text), limit, REDACTOR.generation)


@lru_cache(maxsize=4096)
def _clip(text: str, limit: int, _generation: int) -> str:
    # Cached per registry generation: the watcher clips the same pod and event messages over and over.
    text = " ".join(REDACTOR.text(text).split())
    if len(text) <= limit:
        return text
    if limit < 20:
        return text[: limit - 1] + "…"
    head = limit * 2 // 5
    return text[:head] + " … " + text[-(limit - head - 3) :]
