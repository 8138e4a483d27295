"""Timers in Redis: a sorted set by due time per shard, the plan in one hash per case.

Why this shape:
- **Atomic claim.** A Lua script moves due members from ``due`` to ``inflight`` (with a lease)
  in one step, so two timer workers never claim the same timer. What a worker claimed and
  did not acknowledge (it died) goes back to ``due`` when the lease runs out.
- **Fencing.** A member names the case version it was planned on (``<case>|<version>|<k>``);
  the case hash holds the current version. A timer planned on an older version (the case was
  accepted, paused, re-dispatched since) is dropped at claim time, never fired.
- **Fired once.** The hash keeps the ids of escalations already published; re-planning after
  any change skips them, and a rebuild restores them from the ``escalations`` topic.
- **Cluster-ready.** Every key of a case sits in its shard's hash slot (``{t<n>}``), so the
  scripts touch one slot, and shards spread over a Redis Cluster.
- **Small.** A timer costs one short sorted-set member plus one compact plan entry.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from redis.lock import Lock

from engine.sla.model import SlaTimer

SHARDS = 16

_SCHEDULE = """
local due, case = KEYS[1], KEYS[2]
local version = tonumber(ARGV[1])
local old = tonumber(redis.call('HGET', case, 'v') or '-1')
if old > version then return 0 end
local fired = ' ' .. (redis.call('HGET', case, 'f') or '') .. ' '
for i = 5, #ARGV do
  if fired:find(' ' .. ARGV[i] .. ' ', 1, true) == nil then fired = fired .. ARGV[i] .. ' ' end
end
fired = fired:gsub('^%s+', ''):gsub('%s+$', '')
local n = tonumber(redis.call('HGET', case, 'n') or '0')
for k = 0, n - 1 do redis.call('ZREM', due, ARGV[2] .. '|' .. old .. '|' .. k) end
local plan = cjson.decode(ARGV[3])
if #plan == 0 then
  redis.call('DEL', case)
  return 1
end
redis.call('HSET', case, 'v', version, 'n', #plan, 'p', ARGV[3], 's', ARGV[4], 'f', fired)
local spaced = ' ' .. fired .. ' '
for k, entry in ipairs(plan) do
  if spaced:find(' ' .. entry[1] .. ' ', 1, true) == nil then
    redis.call('ZADD', due, entry[2], ARGV[2] .. '|' .. version .. '|' .. (k - 1))
  end
end
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

_ACK = """
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then
  local fired = redis.call('HGET', KEYS[2], 'f') or ''
  redis.call('HSET', KEYS[2], 'f', fired == '' and ARGV[2] or (fired .. ' ' .. ARGV[2]))
end
return 1
"""


def shard_of(case_id: str) -> int:
    return zlib.crc32(case_id.encode()) % SHARDS


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


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
        return f"{self.prefix}gd:{{t{shard_of(case_id)}}}:c:{case_id}"

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
        plan = [[t.escalation_id, _ms(t.due), t.limit, t.step, t.percent, _ms(t.deadline),
                 t.recipient] for t in timers]
        self._schedule(keys=[self._due(shard_of(case_id)), self._case(case_id)],
                       args=[version, case_id, json.dumps(plan, separators=(",", ":")),
                             json.dumps(summary, ensure_ascii=False, separators=(",", ":")),
                             *fired],
                       client=pipe or self.redis)

    def pipeline(self) -> redis.client.Pipeline[bytes]:
        return self.redis.pipeline(transaction=False)

    def version_of(self, case_ids: Sequence[str]) -> list[int | None]:
        pipe = self.pipeline()
        for case_id in case_ids:
            pipe.hget(self._case(case_id), "v")
        return [int(v) if v is not None else None for v in pipe.execute()]

    # --- firing -------------------------------------------------------------------------

    def claim(self, now: datetime, lease_s: float = 30.0, batch: int = 500) -> list[Claimed]:
        now_ms = _ms(now)
        out: list[Claimed] = []
        for shard in range(SHARDS):
            keys = [self._due(shard), self._inflight(shard)]
            self._requeue(keys=keys, args=[now_ms, batch])
            raw = self._claim(keys=keys, args=[now_ms, batch, now_ms + int(lease_s * 1000)])
            for i in range(0, len(raw), 2):
                member = raw[i].decode()
                case_id, version, index = member.rsplit("|", 2)
                out.append(Claimed(member, case_id, int(version), int(index), int(raw[i + 1])))
        return out

    def resolve(self, claimed: Sequence[Claimed]) -> tuple[list[Firing], list[Claimed]]:
        """Split claimed timers into those to fire and stale ones (fenced off or fired)."""
        pipe = self.pipeline()
        for c in claimed:
            pipe.hmget(self._case(c.case_id), ["v", "p", "s", "f"])
        firing, stale = [], []
        for c, (version, plan, summary, fired) in zip(claimed, pipe.execute(), strict=True):
            if version is None or int(version) != c.version:
                stale.append(c)
                continue
            entries = json.loads(plan)
            if c.index >= len(entries):
                stale.append(c)
                continue
            eid, due, limit, step, percent, deadline, recipient = entries[c.index]
            if eid in (fired or b"").decode().split():
                stale.append(c)
                continue
            timer = SlaTimer(escalation_id=eid, limit=limit, step=step, percent=percent,
                             due=_at(due), deadline=_at(deadline), recipient=recipient)
            firing.append(Firing(c, timer, json.loads(summary)))
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
