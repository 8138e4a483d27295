"""Timers in Redis: a sorted set by due time per shard, the plan in one small value per case.

Why this shape:
- **Atomic claim.** A Lua script moves due members from ``due`` to ``inflight`` (with a lease)
  in one step, so two timer workers never claim the same timer. What a worker claimed and
  did not acknowledge (it died) goes back to ``due`` when the lease runs out.
- **Fencing.** A member names the case version it was planned on (``<case>|<version>|<k>``);
  the case value holds the current version. A timer planned on an older version (the case was
  accepted, paused, re-dispatched since) is dropped at claim time, never fired.
- **Fired once.** The case value keeps the ids of escalations already published; re-planning
  after any change skips them, and a rebuild restores them from the ``escalations`` topic.
- **Cluster-ready.** Every key of a case sits in its shard's hash slot (``{t<n>}``), so the
  scripts touch one slot, and shards spread over a Redis Cluster.
- **Small.** A million pending timers should fit in a quarter of a gigabyte (issue #5; the
  benchmark is ``python -m tests.bench --only timers``). The sorted-set member is the floor
  (about 120 bytes: skiplist node, dict entry, member string); the rest of a case lives in ONE
  string, not a hash: a hash whose plan field passes 64 bytes leaves Redis's compact listpack
  encoding and costs a dict, an entry and a string per field (1,128 bytes for a 5-timer case
  against 287 now). The value is ``<version> <count>\\n<fired ids>\\n<plan>``: the scripts
  read and write the first two lines; the plan (the timers in their wire form and the case
  summary an escalation quotes) is only read back in Python when a timer fires, so it is
  stored deflated with a preset dictionary of the words every plan repeats (5 timers: 200
  bytes instead of 1,229 of JSON).

The layout of the case value and ``_ZDICT`` are a storage format: a value written with one
cannot be read with another. Change either together with ``CASE_KEY``, so old values are
never read; the workers' audit then finds the open cases missing and rebuilds from Kafka
(``griddispatch timers rebuild`` does it at once). Members claimed meanwhile find no value
under the new key and are dropped as stale; the rebuild plans them again.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from pydantic import TypeAdapter
from pydantic_core import from_json, to_json
from redis.lock import Lock

from engine.sla.model import SlaTimer

SHARDS = 16
CASE_KEY = "case"  # the infix of case keys; see the module docstring before changing it

_WIRE = TypeAdapter(list[SlaTimer])

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

# ARGV: version, case id, plan, "<due ms> <escalation id> ..." (one pair per timer, in plan
# order), fired ids to add (space-separated; a rebuild passes what ``escalations`` holds).
_SCHEDULE = r"""
local due, case, version = KEYS[1], KEYS[2], tonumber(ARGV[1])
local old, count, fired = -1, 0, ''
local raw = redis.call('GET', case)
if raw then
  local v, c, f = string.match(raw, '^(%d+) (%d+)\n([^\n]*)\n')
  old, count, fired = tonumber(v), tonumber(c), f
end
if old > version then return 0 end
for id in string.gmatch(ARGV[5], '%S+') do
  if string.find(' ' .. fired .. ' ', ' ' .. id .. ' ', 1, true) == nil then
    fired = fired == '' and id or (fired .. ' ' .. id)
  end
end
if count > 0 then
  local gone = {}
  for k = 0, count - 1 do gone[k + 1] = ARGV[2] .. '|' .. old .. '|' .. k end
  redis.call('ZREM', due, unpack(gone))
end
local add, spaced, n = {}, ' ' .. fired .. ' ', 0
for score, id in string.gmatch(ARGV[4], '(%d+) (%S+)') do
  if fired == '' or string.find(spaced, ' ' .. id .. ' ', 1, true) == nil then
    add[#add + 1] = score
    add[#add + 1] = ARGV[2] .. '|' .. version .. '|' .. n
  end
  n = n + 1
end
if n == 0 then
  redis.call('DEL', case)
  return 1
end
redis.call('SET', case, version .. ' ' .. n .. '\n' .. fired .. '\n' .. ARGV[3])
if #add > 0 then redis.call('ZADD', due, unpack(add)) end
return 1
"""

_CLAIM = """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0,
                           ARGV[2])
for i = 1, #members, 2 do
  redis.call('ZREM', KEYS[1], members[i])
  redis.call('ZADD', KEYS[2], ARGV[3], members[i])
end
return members
"""

_REQUEUE = """
local members = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(members) do
  redis.call('ZREM', KEYS[2], m)
  redis.call('ZADD', KEYS[1], ARGV[1], m)
end
return #members
"""

# The plan after the second newline may hold any byte: cut by position, not by pattern.
_ACK = r"""
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then
  local raw = redis.call('GET', KEYS[2])
  if raw then
    local a = string.find(raw, '\n', 1, true)
    local b = string.find(raw, '\n', a + 1, true)
    local fired = string.sub(raw, a + 1, b - 1)
    fired = fired == '' and ARGV[2] or (fired .. ' ' .. ARGV[2])
    redis.call('SET', KEYS[2], string.sub(raw, 1, a) .. fired .. string.sub(raw, b))
  end
end
return 1
"""


def shard_of(case_id: str) -> int:
    return zlib.crc32(case_id.encode()) % SHARDS


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _pack(timers: list[dict[str, Any]], summary: dict[str, object]) -> bytes:
    deflate = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WBITS, _MEMLEVEL, zlib.Z_DEFAULT_STRATEGY,
                               _ZDICT)
    return deflate.compress(to_json({"timers": timers, "summary": summary})) + deflate.flush()


def _unpack(plan: bytes) -> dict[str, Any]:
    inflate = zlib.decompressobj(_WBITS, _ZDICT)
    data: dict[str, Any] = from_json(inflate.decompress(plan) + inflate.flush())
    return data


@dataclass(frozen=True)
class Claimed:
    """A due timer this worker now owns until it acknowledges it (or its lease runs out)."""

    member: str
    case_id: str
    version: int
    index: int
    due_ms: int


@dataclass(frozen=True)
class Firing:
    """A claimed timer that is still current: what to publish."""

    claimed: Claimed
    timer: SlaTimer
    summary: dict[str, object]


class TimerStore:
    def __init__(self, client: redis.Redis[bytes], prefix: str = ""):
        self.redis = client
        self.prefix = prefix
        self._schedule = client.register_script(_SCHEDULE)
        self._claim = client.register_script(_CLAIM)
        self._requeue = client.register_script(_REQUEUE)
        self._ack = client.register_script(_ACK)

    # --- keys ---------------------------------------------------------------------------

    def _due(self, shard: int) -> str:
        return f"{self.prefix}gd:{{t{shard}}}:due"

    def _inflight(self, shard: int) -> str:
        return f"{self.prefix}gd:{{t{shard}}}:inflight"

    def _case(self, case_id: str) -> str:
        return f"{self.prefix}gd:{{t{shard_of(case_id)}}}:{CASE_KEY}:{case_id}"

    @property
    def built_key(self) -> str:
        return f"{self.prefix}gd:{{meta}}:built"

    # --- scheduling ---------------------------------------------------------------------

    def schedule(self, case_id: str, version: int, timers: Sequence[SlaTimer],
                 summary: dict[str, object], fired: Iterable[str] = (),
                 pipe: redis.client.Pipeline[bytes] | None = None) -> None:
        """Replace the case's timers with ``timers`` (none: forget the case).

        Idempotent, and an older version never overwrites a newer one, so replaying the
        ``cases`` topic from any offset is safe.
        """
        self.schedule_wire(case_id, version, _WIRE.dump_python(list(timers), mode="json"),
                           [_ms(t.due) for t in timers], summary, fired, pipe)

    def schedule_wire(self, case_id: str, version: int, timers: list[dict[str, Any]],
                      dues_ms: Sequence[int], summary: dict[str, object],
                      fired: Iterable[str] = (),
                      pipe: redis.client.Pipeline[bytes] | None = None) -> None:
        """``schedule`` for timers still in their wire form (``SlaTimer`` as JSON, as a case
        record carries them) with their due times in epoch ms: what a rebuild has in hand,
        without building a model per timer."""
        pairs = " ".join(f"{due} {t['escalation_id']}"
                         for due, t in zip(dues_ms, timers, strict=True))
        self._schedule(keys=[self._due(shard_of(case_id)), self._case(case_id)],
                       args=[version, case_id, _pack(timers, summary) if timers else b"",
                             pairs, " ".join(fired)],
                       client=pipe or self.redis)

    def pipeline(self) -> redis.client.Pipeline[bytes]:
        return self.redis.pipeline(transaction=False)

    def version_of(self, case_ids: Sequence[str]) -> list[int | None]:
        pipe = self.pipeline()
        for case_id in case_ids:
            pipe.getrange(self._case(case_id), 0, 31)  # the head: "<version> <count>"
        return [int(raw.split(b" ", 1)[0]) if raw else None for raw in pipe.execute()]

    # --- firing -------------------------------------------------------------------------

    def claim(self, now: datetime, lease_s: float = 30.0, batch: int = 500) -> list[Claimed]:
        """Due timers of every shard, up to ``batch`` per shard; one round trip for all."""
        now_ms = _ms(now)
        pipe = self.pipeline()
        for shard in range(SHARDS):
            keys = [self._due(shard), self._inflight(shard)]
            self._requeue(keys=keys, args=[now_ms, batch], client=pipe)
            self._claim(keys=keys, args=[now_ms, batch, now_ms + int(lease_s * 1000)],
                        client=pipe)
        out: list[Claimed] = []
        for raw in pipe.execute()[1::2]:
            for i in range(0, len(raw), 2):
                member = raw[i].decode()
                case_id, version, index = member.rsplit("|", 2)
                out.append(Claimed(member, case_id, int(version), int(index), int(raw[i + 1])))
        return out

    def resolve(self, claimed: Sequence[Claimed]) -> tuple[list[Firing], list[Claimed]]:
        """Split claimed timers into those to fire and stale ones (fenced off or fired)."""
        pipe = self.pipeline()
        for c in claimed:
            pipe.get(self._case(c.case_id))
        firing, stale = [], []
        plans: dict[bytes, dict[str, Any]] = {}
        for c, raw in zip(claimed, pipe.execute(), strict=True):
            if raw is None:
                stale.append(c)
                continue
            head, fired, packed = raw.split(b"\n", 2)
            if int(head.split(b" ", 1)[0]) != c.version:
                stale.append(c)
                continue
            plan = plans.get(packed)
            if plan is None:
                plan = plans[packed] = _unpack(packed)
            timers = plan["timers"]
            if c.index >= len(timers):
                stale.append(c)
                continue
            timer = SlaTimer.model_validate(timers[c.index])
            if timer.escalation_id in fired.decode().split():
                stale.append(c)
                continue
            firing.append(Firing(c, timer, plan["summary"]))
        return firing, stale

    def ack(self, claimed: Claimed, fired_id: str = "") -> None:
        """Done with a claimed timer; ``fired_id`` marks its escalation as published."""
        shard = shard_of(claimed.case_id)
        self._ack(keys=[self._inflight(shard), self._case(claimed.case_id)],
                  args=[claimed.member, fired_id])

    # --- inspection ---------------------------------------------------------------------

    def pending(self) -> int:
        pipe = self.pipeline()
        for shard in range(SHARDS):
            pipe.zcard(self._due(shard))
        return sum(pipe.execute())

    def next_due(self) -> datetime | None:
        pipe = self.pipeline()
        for shard in range(SHARDS):
            pipe.zrange(self._due(shard), 0, 0, withscores=True)
        scores = [int(rows[0][1]) for rows in pipe.execute() if rows]
        return _at(min(scores)) if scores else None

    def forget(self, case_id: str, pipe: redis.client.Pipeline[bytes] | None = None) -> None:
        """A deleted case (tombstone): drop its timers whatever version they were."""
        self.schedule(case_id, 2**62, [], {}, (), pipe)

    def lock_rebuild(self, ttl_s: float) -> Lock:
        """Held while a rebuild runs: no worker fires until the index is whole again."""
        lock = self.redis.lock(self.rebuilding_key, timeout=ttl_s, blocking_timeout=ttl_s)
        lock.acquire()
        return lock

    @property
    def rebuilding_key(self) -> str:
        return f"{self.prefix}gd:{{meta}}:rebuilding"

    def can_fire(self) -> bool:
        """The index is whole: built since Redis last lost it, and no rebuild running."""
        built, rebuilding = self.redis.exists(self.built_key), self.redis.exists(
            self.rebuilding_key)
        return bool(built) and not rebuilding

    def is_built(self) -> bool:
        return bool(self.redis.exists(self.built_key))

    def mark_built(self, detail: str) -> None:
        self.redis.set(self.built_key, detail)
