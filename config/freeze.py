"""PURE. Change-freeze windows: weekly recurring times and dated ranges, in a named time zone.

During a freeze a deploy needs one more approval than usual (rollbacks stay allowed: they are the
remedy). Time is passed in as epoch seconds.
"""

from __future__ import annotations

import datetime as dt
from typing import Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class Weekly(BaseModel):
    """Every week on `days`, from `start` to `end` local time (end before start: runs past midnight)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    days: list[str]
    start: str = Field(default="00:00", pattern=HHMM, alias="from")
    end: str = Field(default="23:59", pattern=HHMM, alias="to")
    reason: str = "weekly change freeze"

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        days = [d.lower()[:3] for d in value]
        unknown = [d for d in days if d not in DAYS]
        if unknown or not days:
            raise ValueError(f"days must be some of {', '.join(DAYS)}")
        return days


class Dated(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: dt.datetime = Field(alias="from")
    end: dt.datetime = Field(alias="to")
    reason: str = "change freeze"

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.end <= self.start:
            raise ValueError("`to` must be after `from`")
        return self


class Freeze(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: str = "UTC"
    weekly: list[Weekly] = []
    dates: list[Dated] = []

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    def _windows(self, around: dt.datetime) -> list[tuple[dt.datetime, dt.datetime, str]]:
        """Concrete windows overlapping the fortnight around `around` (local, aware)."""
        zone = ZoneInfo(self.timezone)
        out = []
        for d in self.dates:
            start = d.start if d.start.tzinfo else d.start.replace(tzinfo=zone)
            end = d.end if d.end.tzinfo else d.end.replace(tzinfo=zone)
            out.append((start, end, d.reason))
        today = around.date()
        for offset in range(-7, 8):
            day = today + dt.timedelta(days=offset)
            for w in self.weekly:
                if DAYS[day.weekday()] not in w.days:
                    continue
                start = dt.datetime.combine(day, dt.time.fromisoformat(w.start), zone)
                end = dt.datetime.combine(day, dt.time.fromisoformat(w.end), zone)
                if end <= start:
                    end += dt.timedelta(days=1)
                elif w.end == "23:59":
                    end += dt.timedelta(minutes=1)  # "until 23:59" means the whole day
                out.append((start, end, w.reason))
        return sorted(out)

    def active(self, now: float) -> tuple[str, float] | None:
        """(reason, ends at) when a freeze is on at `now`."""
        at = dt.datetime.fromtimestamp(now, ZoneInfo(self.timezone))
        current = [(end, reason) for start, end, reason in self._windows(at) if start <= at < end]
        if not current:
            return None
        end, reason = max(current)
        return reason, end.timestamp()

    def upcoming(self, now: float, within: float = 7 * 86400) -> tuple[str, float] | None:
        """(reason, starts at) of the next freeze starting within `within` seconds."""
        at = dt.datetime.fromtimestamp(now, ZoneInfo(self.timezone))
        later = [(s, r) for s, _e, r in self._windows(at) if at < s <= at + dt.timedelta(seconds=within)]
        if not later:
            return None
        start, reason = min(later)
        return reason, start.timestamp()


def describe(freeze: Freeze | None, now: float) -> str | None:
    """One line for cards and status: an active freeze, else the next one this week."""
    if freeze is None:
        return None
    zone = ZoneInfo(freeze.timezone)
    if (on := freeze.active(now)) is not None:
        until = dt.datetime.fromtimestamp(on[1], zone).strftime("%a %H:%M %Z")
        return f"Change freeze in effect ({on[0]}) until {until}: deploys need one more approval."
    if (next_ := freeze.upcoming(now)) is not None:
        starts = dt.datetime.fromtimestamp(next_[1], zone).strftime("%a %d %b %H:%M %Z")
        return f"Next change freeze ({next_[0]}) starts {starts}."
    return None
