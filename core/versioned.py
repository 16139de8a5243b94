"""PURE. Records that outlive the process that wrote them: Redis records and queued jobs, read by older
and newer plate-bot processes side by side during a rolling upgrade.

A `Versioned` model ignores fields it does not know (a newer version added them) and defaults the ones it
misses (an older version never wrote them), so neither side fails on the other's records. `format` says
which shape wrote a record; it is left out of storage while it is 1, because plate-bot before 0.2 built
records with `cls(**data)` and refused any field it did not know. Bump it (and keep reading the old
shape) when a field changes meaning; adding a field with a default needs no bump.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict


class Versioned(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    # Fields added after plate-bot 0.1, written only when they differ from their default: a record that
    # does not use them stays in the shape 0.1's `cls(**data)` reader takes.
    ADDED: ClassVar[tuple[str, ...]] = ()

    format: int = 1

    def for_storage(self) -> str:
        data = self.model_dump(mode="json")
        if data.get("format") == 1:
            del data["format"]
        for name in self.ADDED:
            if getattr(self, name) == type(self).model_fields[name].get_default(call_default_factory=True):
                data.pop(name, None)
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_storage(cls, raw: str | bytes) -> Self:
        return cls.model_validate_json(raw)

    def evolve(self, **changes: Any) -> Self:
        """A copy with `changes` (already the right types: transitions are code, not input)."""
        return self.model_copy(update=changes)
