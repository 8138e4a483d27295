"""The stored form of a case's timer plan, and the header that carries it on ``cases``.

The timer index keeps, per case, ``<due ms> <escalation id>`` pairs (what the Lua scripts
read) and the plan itself (the timers in their wire form and the summary an escalation
quotes), deflated with a preset dictionary. The route worker computes both once, when it
writes a case record, and sends them in the record's ``timer-index/<format>`` header:
a rebuild or the live timer worker then schedules a case from a few hundred bytes of header
instead of parsing the 4-5 KB record and deflating its plan again (about 80 of the ~100 µs a
record cost; issue #18's target is a rebuild within 8x a plain read of the topic).

``CASE_KEY`` names the format: the layout of the case value, ``_ZDICT`` and the header
change together with it, so a value or header written with another format is never read (a
record whose header names another format is parsed from its JSON instead).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pydantic_core import from_json, to_json

from engine.sla.model import SlaTimer
from engine.sla.timer_decisions import CaseTimers

CASE_KEY = "cs"  # the infix of case keys, and the format's name; see the docstring
INDEX_HEADER = f"timer-index/{CASE_KEY}"

# Deflate's preset dictionary: the strings a plan repeats, commonest last (cheapest to refer
# to). Ids, times and codes still differ per case; the field names and words do not (the
# year helps only while it is current: a few bytes per case otherwise).
_ZDICT = (
    b'"grid_code":null,"priority":"low","priority":"high","priority":"urgent","platform":'
    b'"market","platform":"enforcement","platform":"services","state":"dispatched","state":'
    b'"reopened","policy":"urgent","policy":"market","policy":"enforcement","policy":"services"'
    b',"policy":"mediation","limit":"accept","step":"level3","percent":null,"due":"2026-'
    b'{"timers":[{"escalation_id":"","limit":"resolve","step":"warning","percent":50,"due":'
    b'"2026-11-27T12:00:00+08:00","deadline":"2026-12-01T17:30:00+08:00","recipient":"330110'
    b'.zhzx"},{"escalation_id":"","limit":"resolve","step":"warning","percent":80,"due":"2026-'
    b'11-30T17:30:00+08:00","deadline":"2026-12-01T17:30:00+08:00","recipient":"330110"},'
    b'{"escalation_id":"","limit":"resolve","step":"breach","percent":null,"due":"2026-12-01T'
    b'17:30:00+08:00","deadline":"2026-12-01T17:30:00+08:00","recipient":"330110"},'
    b'{"escalation_id":"","limit":"resolve","step":"level1","percent":null,"due":"2026-12-02T'
    b'08:30:00+08:00","deadline":"2026-12-01T17:30:00+08:00","recipient":"330110.zhzx"},'
    b'{"escalation_id":"","limit":"resolve","step":"level2","percent":null,"due":"2026-12-02T'
    b'17:30:00+08:00","deadline":"2026-12-01T17:30:00+08:00","recipient":"330110.zhzx"}],'
    b'"summary":{"partition_key":"330110","matter_code":"","platform":"governance","priority":'
    b'"normal","grid_code":"330110","lead":"330110","state":"accepted","policy":"default"}}'
)
# Raw deflate, 4 KiB window (a 12-timer plan fits), small state (cheap to set up); level 3
# compresses as fast as 1 and within ~10 % of 6, which costs half as much again.
_WBITS, _MEMLEVEL, _LEVEL = -12, 4, 3


class IndexEntry(NamedTuple):
    """What the schedule script takes for one case version: ``pairs`` empty when the case
    has no timer left (it is forgotten)."""

    version: int
    pairs: bytes
    plan: bytes


def entry(version: int, timers: list[dict[str, Any]], dues_ms: Sequence[int],
          summary: dict[str, object]) -> IndexEntry:
    """The entry of timers in their wire form (as read from a record's JSON), with their due
    times in epoch ms."""
    return IndexEntry(version, pairs(dues_ms, [t["escalation_id"] for t in timers]),
                      pack(timers, summary) if timers else b"")


def entry_of_timers(version: int, timers: Sequence[SlaTimer],
                    summary: dict[str, object]) -> IndexEntry:
    """The same entry from the models, serialised straight to JSON rather than to dicts
    first (that step cost as much as the rest: the route worker pays this per case record)."""
    return IndexEntry(version, pairs([ms(t.due) for t in timers],
                                     [t.escalation_id for t in timers]),
                      pack(timers, summary) if timers else b"")


def entry_of(case: CaseTimers) -> IndexEntry:
    return entry_of_timers(case.version, case.timers, case.summary)


def pairs(dues_ms: Sequence[int], escalation_ids: Sequence[str]) -> bytes:
    """``<due ms> <escalation id>`` per timer, in plan order: what the scripts read."""
    return " ".join(f"{due} {eid}"
                    for due, eid in zip(dues_ms, escalation_ids, strict=True)).encode()


def header(value: IndexEntry) -> bytes:
    """``<version>\n<pairs>\n<plan>``: the plan is binary and last."""
    return b"%d\n%s\n%s" % (value.version, value.pairs, value.plan)


Headers = list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None] | None


def from_headers(headers: Headers) -> IndexEntry | None:
    """The entry a record's headers carry; None without one of this format (or garbled)."""
    found = headers.get(INDEX_HEADER) if isinstance(headers, dict) else next(
        (raw for name, raw in headers or () if name == INDEX_HEADER), None)
    if not isinstance(found, bytes):
        return None
    try:
        version, pairs, packed = found.split(b"\n", 2)
        return IndexEntry(int(version), pairs, packed)
    except ValueError:
        return None


def pack(timers: Sequence[SlaTimer] | list[dict[str, Any]], summary: dict[str, object]) -> bytes:
    deflate = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WBITS, _MEMLEVEL, zlib.Z_DEFAULT_STRATEGY,
                               _ZDICT)
    return deflate.compress(to_json({"timers": timers, "summary": summary})) + deflate.flush()


def unpack(plan: bytes) -> dict[str, Any]:
    inflate = zlib.decompressobj(_WBITS, _ZDICT)
    data: dict[str, Any] = from_json(inflate.decompress(plan) + inflate.flush())
    return data


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def at(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC)
