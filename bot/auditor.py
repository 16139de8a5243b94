"""Writes the audit trail: each record goes to the Redis stream (Store.append_audit), to the `plate.audit`
logger as one structured line, and, when the environments file names an `audit_channel`, to Slack.

Records are written right after the change they describe has been committed. Auditing never raises: the
change has already happened, so a Redis or Slack hiccup is logged loudly instead of turning a finished
approval or job into an error. The bot has no code path that edits or deletes a record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bot import audit
from bot.approvals import Request
from bot.audit import Event
from bot.slack import SlackError, SlackGateway
from bot.store import Store

log = logging.getLogger("plate.audit")


class Auditor:
    def __init__(
        self,
        store: Store,
        slack: SlackGateway | None = None,
        channel: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.slack, self.channel, self.clock = store, slack, channel, clock

    def record(self, event: Event, *, request: Request | None = None, **fields: object) -> None:
        self._write(audit.entry(event, at=self.clock(), request=request, **fields))

    def transition(self, old: Request, new: Request) -> None:
        """The records of one request state change (see audit.for_transition)."""
        for record in audit.for_transition(old, new, at=self.clock()):
            self._write(record)

    def _write(self, record: dict[str, str]) -> None:
        try:
            self.store.append_audit(record)
        except Exception:
            log.error("audit record not stored in Redis", extra=record, exc_info=True)
        log.info(record["event"], extra=record)
        if self.slack is not None and self.channel:
            try:
                self.slack.post(self.channel, audit.line(record))
            except SlackError as exc:
                log.warning("audit record not mirrored to Slack (%s)", exc.code, extra={"event": record["event"]})
