"""plate-bot's Redis keys, split by concern: requests and locks (`requests`), records that outlive a
request (`records`: backups, the audit trail, change records), what App Home and /metrics read (`home`).
The incident watcher keeps its own keys (workers.watcher.store). Every method raises `Unavailable` on
Redis trouble, never a raw redis error (`base`).

`Store` is all three on one connection, for the processes that use them together (serve, jobs).
"""

from __future__ import annotations

from core.store.base import StorePart
from core.store.home import HomeStore
from core.store.records import RecordStore
from core.store.requests import LockHeld, RequestStore

__all__ = ["HomeStore", "LockHeld", "RecordStore", "RequestStore", "Store", "StorePart"]


class Store(RequestStore, RecordStore, HomeStore):
    """Requests and locks, records, and Home data on one connection."""
