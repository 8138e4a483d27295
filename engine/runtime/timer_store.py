"""Timers in Redis: one sorted-set member per case, due at its next timer; the plan in one
small value per case.

Why this shape:
- **One member per case.** A case has up to a dozen timers (warnings, breach, ladder, for
  two clocks); indexing each would cost a sorted-set member (~120 bytes, and a random
  skiplist insert) per timer. The member ``<case>|<version>`` is scored by the case's next
  unfired due time instead; a claim takes the case, fires every timer of it that is due,
  and puts the member back at the next one. A rebuild of a million cases then inserts a
  million members, not ten million (issue #5's benchmark: ``python -m tests.bench --only
  timers``).
- **Atomic claim.** A Lua script moves due members from ``due`` to ``inflight`` (with a lease)
  in one step, so two timer workers never claim the same case at once. What a worker claimed
  and did not acknowledge (it died) goes back to ``due`` when the lease runs out.
- **Fencing.** The member names the case version it was planned on; the case value holds the
  current version. A member planned on an older version (the case was accepted, paused,
  re-dispatched since) is dropped at claim time, never fired, and never put back.
- **Fired once.** The case value keeps the ids of escalations already published; re-planning
  after any change skips them, and a rebuild restores them from the ``escalations`` topic.
  An acknowledgement records what it published even when the case was re-planned meanwhile.
- **Cluster-ready.** Every key of a case sits in its shard's hash slot (``{t<n>}``), so the
  scripts touch one slot, and shards spread over a Redis Cluster.
- **Small.** The case value is one string, not a hash (a hash whose field passes 64 bytes
  leaves Redis's compact encoding): ``<version> <count>\\n<fired ids>\\n<dues>\\n<plan>``.
  The scripts read the first three lines (``<dues>`` is ``<due ms> <escalation id>`` per
  timer, in plan order); the plan (the timers in their wire form and the case summary an
  escalation quotes) is only read back in Python when a timer fires, so it is stored
  deflated with a preset dictionary of the words every plan repeats.

The layout of the case value and ``_ZDICT`` (both in ``timer_plan``, with the record header
that carries them) are a storage format: a value written with one cannot be read with
another. Change either together with ``CASE_KEY``, so old values are
never read; the workers' audit then finds the open cases missing and rebuilds from Kafka
(``griddispatch timers rebuild`` does it at once). Members claimed meanwhile find no value
under the new key and are dropped as stale; the rebuild plans them again.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from redis.lock import Lock

from engine.runtime import timer_plan as plan
from engine.runtime.redis_clients import ClusterScripts, RedisClient, RedisPipeline
from engine.runtime.timer_plan import CASE_KEY
from engine.sla.model import SlaTimer

SHARDS = 16

# ARGV: version, case id, plan, "<due ms> <escalation id> ..." (one pair per timer, in plan
# order), fired ids to add (space-separated; a rebuild passes what ``escalations`` holds).
_SCHEDULE = r"""
local due, case, version = KEYS[1], KEYS[2], tonumber(ARGV[1])
local old, fired = -1, ''
local raw = redis.call('GET', case)
if raw then
  local v, f = string.match(raw, '^(%d+) %d+\n([^\n]*)\n')
  old, fired = tonumber(v), f
end
if old > version then return 0 end
for id in string.gmatch(ARGV[5], '%S+') do
  if string.find(' ' .. fired .. ' ', ' ' .. id .. ' ', 1, true) == nil then
    fired = fired == '' and id or (fired .. ' ' .. id)
  end
end
if old >= 0 then redis.call('ZREM', due, ARGV[2] .. '|' .. old) end
local spaced, n, next = ' ' .. fired .. ' ', 0, nil
for score, id in string.gmatch(ARGV[4], '(%d+) (%S+)') do
  if fired == '' or string.find(spaced, ' ' .. id .. ' ', 1, true) == nil then
    local s = tonumber(score)
    if next == nil or s < next then next = s end
  end
  n = n + 1
end
if n == 0 then
  redis.call('DEL', case)
  return 1
end
redis.call('SET', case, version .. ' ' .. n .. '\n' .. fired .. '\n' .. ARGV[4] .. '\n' .. ARGV[3])
if next ~= nil then redis.call('ZADD', due, next, ARGV[2] .. '|' .. version) end
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

# ARGV: member, fired ids (space-separated), next due ms ('' for none), version.
# The plan after the third newline may hold any byte: cut by position, not by pattern.
_ACK = r"""
redis.call('ZREM', KEYS[2], ARGV[1])
local raw = redis.call('GET', KEYS[3])
if not raw then return 0 end
local a = string.find(raw, '\n', 1, true)
local b = string.find(raw, '\n', a + 1, true)
if ARGV[2] ~= '' then
  local fired = string.sub(raw, a + 1, b - 1)
  fired = fired == '' and ARGV[2] or (fired .. ' ' .. ARGV[2])
  redis.call('SET', KEYS[3], string.sub(raw, 1, a) .. fired .. string.sub(raw, b))
end
local version = tonumber(string.match(raw, '^(%d+) '))
if ARGV[3] ~= '' and version == tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return 1
"""


def shard_of(case_id: str) -> int:
    return zlib.crc32(case_id.encode()) % SHARDS




@dataclass(frozen=True)
class Claimed:
    """A case with a due timer that this worker owns until it acknowledges it (or the lease
    runs out)."""

    member: str
    case_id: str
    version: int
    due_ms: int


@dataclass(frozen=True)
class DueCase:
    """A claimed case: its timers due now, not fired yet, in due order (none: stale)."""

    claimed: Claimed
    timers: list[SlaTimer]
    summary: dict[str, object]
    later_ms: int | None  # the case's next unfired timer after these

    @property
    def stale(self) -> bool:
        return not self.timers

    def next_ms(self, fired: Iterable[str]) -> int | None:
        """When to come back: a timer not published now is due again at once."""
        done = set(fired)
        left = [plan.ms(t.due) for t in self.timers if t.escalation_id not in done]
        if self.later_ms is not None:
            left.append(self.later_ms)
        return min(left, default=None)


class TimerStore:
    def __init__(self, client: RedisClient, prefix: str = ""):
        self.redis = client
        self.prefix = prefix
        self._schedule = client.register_script(_SCHEDULE)
        self._claim = client.register_script(_CLAIM)
        self._requeue = client.register_script(_REQUEUE)
        self._ack = client.register_script(_ACK)
        self._scripts = ClusterScripts(client, _SCHEDULE, _CLAIM, _REQUEUE, _ACK)

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
                 pipe: RedisPipeline | None = None) -> None:
        """Replace the case's timers with ``timers`` (none: forget the case).

        Idempotent, and an older version never overwrites a newer one, so replaying the
        ``cases`` topic from any offset is safe.
        """
        self.schedule_entry(case_id, plan.entry_of_timers(version, timers, summary), fired, pipe)

    def schedule_entry(self, case_id: str, entry: plan.IndexEntry, fired: Iterable[str] = (),
                       pipe: RedisPipeline | None = None) -> None:
        """``schedule`` for an entry already made (``timer_plan``): what a case record's
        header carries, or what a rebuild made from the record's JSON."""
        self._schedule(keys=[self._due(shard_of(case_id)), self._case(case_id)],
                       args=[entry.version, case_id, entry.plan, entry.pairs, " ".join(fired)],
                       client=pipe or self.redis)

    def pipeline(self) -> RedisPipeline:
        """A pipeline whose scripts the server knows (``ClusterScripts``)."""
        self._scripts.ensure()
        return self.redis.pipeline(transaction=False)

    def version_of(self, case_ids: Sequence[str]) -> list[int | None]:
        pipe = self.pipeline()
        for case_id in case_ids:
            pipe.getrange(self._case(case_id), 0, 31)  # the head: "<version> <count>"
        return [int(raw.split(b" ", 1)[0]) if raw else None for raw in pipe.execute()]

    # --- firing -------------------------------------------------------------------------

    def claim(self, now: datetime, lease_s: float = 30.0, batch: int = 500) -> list[Claimed]:
        """Cases with a due timer, up to ``batch`` per shard; one round trip for all shards."""
        now_ms = plan.ms(now)
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
                case_id, version = member.rsplit("|", 1)
                out.append(Claimed(member, case_id, int(version), int(raw[i + 1])))
        return out

    def resolve(self, claimed: Sequence[Claimed], now: datetime) -> list[DueCase]:
        """What each claimed case has due by ``now``; fenced-off or fired-out cases are
        stale (acknowledge them with nothing fired)."""
        now_ms = plan.ms(now)
        pipe = self.pipeline()
        for c in claimed:
            pipe.get(self._case(c.case_id))
        out = []
        for c, raw in zip(claimed, pipe.execute(), strict=True):
            if raw is None:
                out.append(DueCase(c, [], {}, None))
                continue
            head, fired_raw, dues, packed = raw.split(b"\n", 3)
            if int(head.split(b" ", 1)[0]) != c.version:
                out.append(DueCase(c, [], {}, None))
                continue
            fired = set(fired_raw.decode().split())
            pairs = dues.split()
            due_now, later = [], None
            for index in range(0, len(pairs), 2):
                due_ms, eid = int(pairs[index]), pairs[index + 1].decode()
                if eid in fired:
                    continue
                if due_ms <= now_ms:
                    due_now.append(index // 2)
                elif later is None or due_ms < later:
                    later = due_ms
            if not due_now:
                out.append(DueCase(c, [], {}, later))
                continue
            unpacked = plan.unpack(packed)
            timers = sorted((SlaTimer.model_validate(unpacked["timers"][i]) for i in due_now),
                            key=lambda t: t.due)
            out.append(DueCase(c, timers, unpacked["summary"], later))
        return out

    def ack(self, due: DueCase, fired: Sequence[str] = ()) -> None:
        """Done with a claimed case: ``fired`` are the escalations now published; the case
        goes back in the index at its next unfired timer (unless it changed meanwhile)."""
        claimed = due.claimed
        shard = shard_of(claimed.case_id)
        next_ms = due.next_ms(fired) if not due.stale or due.later_ms is not None else None
        self._ack(keys=[self._due(shard), self._inflight(shard), self._case(claimed.case_id)],
                  args=[claimed.member, " ".join(fired),
                        "" if next_ms is None else next_ms, claimed.version])

    # --- inspection ---------------------------------------------------------------------

    def pending(self) -> int:
        """Cases waiting for a timer (one index entry each)."""
        pipe = self.pipeline()
        for shard in range(SHARDS):
            pipe.zcard(self._due(shard))
        return sum(pipe.execute())

    def next_due(self) -> datetime | None:
        pipe = self.pipeline()
        for shard in range(SHARDS):
            pipe.zrange(self._due(shard), 0, 0, withscores=True)
        scores = [int(rows[0][1]) for rows in pipe.execute() if rows]
        return plan.at(min(scores)) if scores else None

    def forget(self, case_id: str, pipe: RedisPipeline | None = None) -> None:
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
