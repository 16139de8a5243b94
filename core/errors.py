"""Errors, classified by what the caller should do with them.

PlateError
├── UserError            the text is safe to show to the person who asked, as is
│   ├── UsageError       the command did not parse; carries the usage hint
│   ├── NotAllowed       policy refused the request or the click
│   ├── Conflict         the request was already decided, or the environment is locked
│   └── Unavailable      a dependency (Redis, Slack) is down; nothing was changed
└── (anything else)      a bug: logged with an id, the user sees only that id
"""

from __future__ import annotations


class PlateError(Exception):
    """Root of plate-bot's own errors."""


class UserError(PlateError):
    """A known reason, worded for the person who caused it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(UserError):
    """The command text did not parse."""


class NotAllowed(UserError):
    """Policy says no: wrong channel, not a requester, not an approver, self-approval."""


class Conflict(UserError):
    """The request is already decided, or another change holds the environment."""


class Unavailable(UserError):
    """A dependency is down; nothing was changed."""
