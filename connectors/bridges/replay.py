"""File replay, the pure part: one JSONL line -> a report or a problem; the rate limit.

``griddispatch replay`` feeds history (an export of an old system, a day to re-run) into
the live intake. Each line is an intake report as it stands (its ``channel`` and
``channel_id`` are kept, so replaying a file twice, or a file that overlaps what the live
channels already sent, creates no second incident).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pydantic import ValidationError

from engine.contracts import IntakeReport

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*([smh]))?\s*$")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class LineProblem:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


def parse_line(text: str, line: int) -> IntakeReport | LineProblem | None:
    """A report, a problem naming the line and field, or None for a blank line."""
    if not text.strip():
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        return LineProblem(line, "(line)", f"not JSON: {exc}")
    if not isinstance(data, dict):
        return LineProblem(line, "(line)", "must be a JSON object (one intake report)")
    try:
        return IntakeReport.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or "(report)"
        if error["type"] == "extra_forbidden":
            return LineProblem(line, field, "unknown field (channel extras belong in "
                                            "'attributes')")
        if error["type"] == "missing":
            return LineProblem(line, field, "required field is missing")
        return LineProblem(line, field, str(error["msg"]))


def parse_rate(text: str) -> float:
    """``50``, ``50/s``, ``600/m`` or ``3000/h`` -> reports per second."""
    match = _RATE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"'{text}' is not a rate; write e.g. 50, 50/s, 600/m or 3000/h")
    return float(match.group(1)) / _PER[match.group(2) or "s"]


class TokenBucket:
    """At most ``rate`` takes per second on average, bursts of up to ``burst``.

    Pure: the caller passes the clock and sleeps for the returned delay, so the arithmetic
    is tested without sleeping. Tokens may go negative (a debt the refill pays off), which
    keeps the long-run rate exact whatever the caller's sleep precision.
    """

    def __init__(self, rate: float, burst: float = 1.0) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last: float | None = None

    def take(self, now: float) -> float:
        """Take one token at ``now`` (seconds); returns how long to wait before using it."""
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate
