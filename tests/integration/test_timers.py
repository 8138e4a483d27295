"""SLA timers on the real Redis, and escalations end to end on the real broker."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.cluster import RedisCluster

from engine.cases.records import StatusUpdate
from engine.classify import classify_data
from engine.contracts import Classified, to_json
from engine.rules import RuleSet
from engine.rules.load import load_rules
from engine.runtime import kafka
from engine.runtime.redis_clients import redis_client
from engine.runtime.settings import Settings
from engine.runtime.timer_store import SHARDS, TimerStore
from engine.sla.model import SlaTimer
from tests.integration.test_route_worker import Watcher
from tests.integration.workers import apply_topics, running, wait_for
from tests.unit.rules_copy import rules_with_county_sla

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC)


def timer(k: int, due: datetime, recipient: str = "330110.xf") -> SlaTimer:
    return SlaTimer(escalation_id=f"e{k}", limit="accept", step="warning", percent=50,
                    due=due, deadline=due + timedelta(minutes=5), recipient=recipient)


@pytest.fixture
def store(any_redis_url: str) -> TimerStore:
    return TimerStore(redis_client(any_redis_url), f"t{uuid.uuid4().hex[:8]}:")


def test_the_timer_shards_spread_over_a_clusters_primaries(redis_cluster_url: str) -> None:
    store = TimerStore(redis_client(redis_cluster_url), f"t{uuid.uuid4().hex[:8]}:")
    cluster = store.redis
    assert isinstance(cluster, RedisCluster)
    nodes = {cluster.get_node_from_key(store._due(shard)).name for shard in range(SHARDS)}
    assert len(nodes) == len(cluster.get_primaries()) == 3


def test_two_workers_claiming_at_once_fire_each_due_timer_exactly_once(
        any_redis_url: str, store: TimerStore) -> None:
    past = NOW - timedelta(seconds=5)
    pipe = store.pipeline()
    for case in range(400):  # five due timers and one in an hour per case
        store.schedule(f"c{case}", 1, [*(timer(k, past) for k in range(5)),
                                       timer(9, NOW + timedelta(hours=1))], {"lead": "x"}, (),
                       pipe)
    pipe.execute()
    assert store.pending() == 400  # one index entry per case
    other = TimerStore(redis_client(any_redis_url), store.prefix)
    got: dict[str, list[str]] = {"a": [], "b": []}

    def drain(name: str, s: TimerStore) -> None:
        while claimed := s.claim(datetime.now(UTC), batch=20):
            for case in s.resolve(claimed, datetime.now(UTC)):
                fired = [t.escalation_id for t in case.timers]
                s.ack(case, fired)
                got[name] += [f"{case.claimed.case_id}/{eid}" for eid in fired]

    threads = [threading.Thread(target=drain, args=("a", store)),
               threading.Thread(target=drain, args=("b", other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fired = got["a"] + got["b"]
    assert len(fired) == len(set(fired)) == 2000
    assert got["a"] and got["b"], "both workers should have claimed some"
    assert store.pending() == 400  # each case back in the index, at its next timer
    assert store.next_due() == datetime.fromtimestamp(
        int((NOW + timedelta(hours=1)).timestamp() * 1000) / 1000, UTC)


def test_a_newer_case_version_fences_off_old_timers_and_fired_ones_never_return(
        store: TimerStore) -> None:
    past = NOW - timedelta(seconds=1)
    store.schedule("c1", 1, [timer(1, past), timer(2, past)], {"lead": "x"})
    claimed = store.claim(NOW)
    assert len(claimed) == 1
    store.schedule("c1", 2, [timer(2, past), timer(3, NOW + timedelta(hours=1))], {"lead": "x"})
    [case] = store.resolve(claimed, NOW)
    assert case.stale  # planned on version 1: fenced off
    store.ack(case)
    [case] = store.resolve(store.claim(NOW), NOW)
    assert [t.escalation_id for t in case.timers] == ["e2"]
    store.ack(case, ["e2"])
    assert store.claim(NOW) == []  # e3 is due in an hour
    store.schedule("c1", 3, [timer(2, past), timer(3, past)], {"lead": "x"})  # re-planned
    [case] = store.resolve(store.claim(NOW), NOW)
    assert [t.escalation_id for t in case.timers] == ["e3"]  # e2 fired already
    store.schedule("c1", 2, [timer(9, past)], {"lead": "x"})  # an older record: ignored
    assert store.version_of(["c1"]) == [3]
    store.ack(case, ["e3"])  # all fired: the case leaves the index
    assert store.pending() == 0


def test_what_was_fired_while_the_case_changed_is_kept_and_a_failed_one_comes_back(
        store: TimerStore) -> None:
    past = NOW - timedelta(seconds=1)
    store.schedule("c1", 1, [timer(1, past), timer(2, past)], {"lead": "x"})
    [case] = store.resolve(store.claim(NOW), NOW)
    store.schedule("c1", 2, [timer(1, past), timer(2, past)], {"lead": "x"})  # meanwhile
    store.ack(case, ["e1"])  # e1 published; e2 failed
    [again] = store.resolve(store.claim(NOW), NOW)
    assert [t.escalation_id for t in again.timers] == ["e2"]


def test_a_claim_whose_worker_died_comes_back_after_its_lease(store: TimerStore) -> None:
    store.schedule("c1", 1, [timer(1, NOW - timedelta(seconds=1))], {"lead": "x"})
    assert len(store.claim(NOW, lease_s=1)) == 1  # ...and the worker dies here
    assert store.claim(NOW) == []
    again = store.claim(NOW + timedelta(seconds=2))
    assert [c.case_id for c in again] == ["c1"]


def test_a_fired_timer_gives_back_its_plan_and_summary_whatever_bytes_the_plan_packs_to(
        store: TimerStore) -> None:
    past = NOW - timedelta(seconds=1)
    summary = {"partition_key": "330110005", "lead": "330110005.sqb", "grid_code": None,
               "matter_code": "030201", "platform": "governance", "policy": "默认"}
    plans = {f"330110005-{n:012x}": [timer(n * 10 + k, past - timedelta(seconds=k))
                                      for k in range(4)] for n in range(30)}
    pipe = store.pipeline()
    for case_id, timers in plans.items():
        store.schedule(case_id, 1, timers, summary, (), pipe)
    pipe.execute()
    packed = [store.redis.get(store._case(c)) or b"" for c in plans]
    assert any(b"\n" in raw.split(b"\n", 3)[3] for raw in packed)  # the plan is binary
    cases = store.resolve(store.claim(NOW), NOW)
    assert len(cases) == 30 and not any(c.stale for c in cases)
    for case in cases:
        assert case.timers == sorted(plans[case.claimed.case_id], key=lambda t: t.due)
        assert case.summary == summary
        store.ack(case, [t.escalation_id for t in case.timers])
    for n, (case_id, timers) in enumerate(plans.items()):  # re-planned with one more step
        store.schedule(case_id, 2, [*timers, timer(1000 + n, past)], summary)
    cases = store.resolve(store.claim(NOW), NOW)
    assert sorted(t.escalation_id for c in cases for t in c.timers) == sorted(
        f"e{1000 + n}" for n in range(30))


# --- end to end ------------------------------------------------------------------------------

FAST_POLICY = """
sla:
  urgent:
    description: test policy with limits in seconds
    accept: 12s
    resolve: 1h
    unit: natural
    warn_at: [50]
    verify_within: 3s
    ladder:
      - {after: 2s}
      - {after: 4s, to: county.zhzx}
"""


def fast_rules(tmp_path: Path) -> Path:
    return rules_with_county_sla(tmp_path, FAST_POLICY)


def gas_report(ruleset: RuleSet, channel_id: str, lat: float) -> Classified:
    now = datetime.now(UTC)
    record = classify_data(ruleset, {
        "channel": "hotline", "channel_id": channel_id, "reported_at": now.isoformat(),
        "description": "楼道里一股煤气味", "location": {"lat": lat, "lon": 120.0302}}, now)
    assert isinstance(record, Classified), record
    return record


def escalations(watcher: Watcher, case_id: str) -> list[dict[str, Any]]:
    return [r["value"] for r in watcher.records
            if r["topic"] == "escalations" and r["value"]["case_id"] == case_id]


def test_warning_breach_and_ladder_in_order_accepting_in_time_stops_them_and_a_lost_redis_is_rebuilt(  # noqa: E501
        kafka_settings: Settings, any_redis_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two timer workers on one Redis or on a cluster (whose rebuild readers, one per CPU,
    reach the cluster from processes of their own)."""
    settings = kafka_settings
    apply_topics(settings)
    redis_url = any_redis_url
    monkeypatch.setenv("REDIS_URL", redis_url)
    rules = fast_rules(tmp_path)
    ruleset = load_rules(rules)
    producer = kafka.producer(settings)
    watcher = Watcher(settings, ["cases", "escalations", "escalations.330110.zhzx"])
    client = redis_client(redis_url)
    with running(settings, "route", tmp_path / "route.log", rules_dir=rules), \
         running(settings, "timers", tmp_path / "timers-a.log", "--audit-every", "3",
                 rules_dir=rules), \
         running(settings, "timers", tmp_path / "timers-b.log", rules_dir=rules):
        late = gas_report(ruleset, f"late-{uuid.uuid4().hex[:6]}", 30.2905)
        prompt = gas_report(ruleset, f"prompt-{uuid.uuid4().hex[:6]}", 30.3405)
        for record in (late, prompt):
            producer.produce(settings.topic("incidents.classified"), to_json(record),
                             record.division_chain[3][:9].encode())
        producer.flush(10)
        cases = {}
        for record in (late, prompt):
            found = watcher.until("the case", lambda r, rec=record: r["topic"] == "cases" and
                                  rec.incident_id in r["value"]["incident_ids"])
            cases[record.incident_id] = found["value"]
        prompt_case = cases[prompt.incident_id]
        accept = StatusUpdate(case_id=prompt_case["case_id"], department=prompt_case["lead"],
                              action="accepted", at=datetime.now(UTC))
        producer.produce(settings.topic("assignments.status"),
                         accept.model_dump_json(by_alias=True).encode(),
                         prompt_case["partition_key"].encode())
        producer.flush(10)
        late_id = cases[late.incident_id]["case_id"]
        watcher.until("the warning", lambda r: r["topic"] == "escalations"
                      and r["value"]["case_id"] == late_id, timeout=30)
        # Redis loses every timer (as a flush would): the workers rebuild from Kafka.
        for key in client.scan_iter(f"{settings.topic_prefix}gd:*"):
            client.delete(key)
        watcher.until("the last ladder step", lambda r: r["topic"] == "escalations"
                      and r["value"]["case_id"] == late_id
                      and r["value"]["step"] == "level2", timeout=45)
        watcher.until("the county desk's copy", lambda r: r["topic"].startswith(
            "escalations.330110.zhzx") and r["value"]["step"] == "level2", timeout=10)
        watcher.until("the accept of the prompt case", lambda r: r["topic"] == "cases"
                      and r["value"]["case_id"] == prompt_case["case_id"]
                      and r["value"]["state"] == "accepted")
        # resolved, and nobody calls the reporter back: closed when verify_within runs out
        resolve = accept.model_copy(update={"action": "resolved", "note": "已关阀",
                                            "at": datetime.now(UTC)})
        producer.produce(settings.topic("assignments.status"),
                         resolve.model_dump_json(by_alias=True).encode(),
                         prompt_case["partition_key"].encode())
        producer.flush(10)
        closed = watcher.until("the prompt case closed", lambda r: r["topic"] == "cases"
                               and r["value"]["case_id"] == prompt_case["case_id"]
                               and r["value"]["state"] == "closed", timeout=30)
        last = closed["value"]["history"][-1]
        assert (last["action"], last["department"]) == (
            "verified", f"{prompt_case['partition_key']}.zhzx")
        wait_for(lambda: client.exists(f"{settings.topic_prefix}gd:{{meta}}:built") == 1, 20,
                 "the rebuilt index")
    steps = [(e["limit"], e["step"]) for e in escalations(watcher, late_id)]
    accept_steps = [s for s in steps if s[0] == "accept"]
    assert accept_steps == [("accept", "warning"), ("accept", "breach"), ("accept", "level1"),
                            ("accept", "level2")], steps
    ids = Counter(e["escalation_id"] for e in escalations(watcher, late_id))
    assert max(ids.values()) == 1, f"an escalation fired twice: {ids}"
    ladder = {e["step"]: e["recipient"] for e in escalations(watcher, late_id)}
    assert ladder["breach"] == cases[late.incident_id]["lead"]
    assert ladder["level2"] == "330110.zhzx"
    assert escalations(watcher, prompt_case["case_id"]) == [], "accepted in time: no escalation"
    first = json.dumps(escalations(watcher, late_id)[0], ensure_ascii=False)
    assert '"schema": "griddispatch.escalation/1"' in first
