"""Durations as people write them in the environments file: `30s`, `15m`, `1h`, `1h30m`."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_PART = re.compile(r"([0-9]+)([smhd])")
_WHOLE = re.compile(r"^(?:[0-9]+[smhd])+$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> int:
    """Seconds in `value`; a bare integer is taken as seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration like 30s, 15m or 1h is expected")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()):
        seconds = int(value.strip())
    elif isinstance(value, str) and _WHOLE.match(value.strip()):
        seconds = sum(int(n) * _UNIT[u] for n, u in _PART.findall(value.strip()))
    else:
        raise ValueError(f"{value!r} is not a duration like 30s, 15m or 1h")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


def format_duration(seconds: int | float) -> str:
    """`900` -> `15m`, `5400` -> `1h30m`, `42` -> `42s`."""
    seconds = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


Duration = Annotated[int, BeforeValidator(parse_duration), PlainSerializer(format_duration)]
"""Seconds, parsed from a duration string."""
