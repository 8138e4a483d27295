"""Durations as operators write them in YAML: ``30m``, ``4h``, ``7d``.

One parser for topic retention and for SLA limits, so both files read the same way. The
meaning of a day (24 hours, or one working day) is the caller's: this only splits the text.
"""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def split_duration(text: str) -> tuple[int, str]:
    """``"5d"`` -> ``(5, "d")``; raises ValueError with the accepted forms."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"'{text}' is not a duration; write a whole number and a unit, "
                         "e.g. 30s, 15m, 4h, 7d or 2w")
    return int(match.group(1)), match.group(2)


def to_timedelta(text: str) -> timedelta:
    amount, unit = split_duration(text)
    return timedelta(seconds=amount * _SECONDS[unit])


def to_millis(text: str) -> int:
    return int(to_timedelta(text).total_seconds() * 1000)
