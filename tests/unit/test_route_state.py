"""The route worker without a broker: partitioning, store rebuild, offsets, headers, metrics
tallies, and the transaction loop (commit and abort) over fake Kafka clients."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from engine.cases.dispatch import on_classified, on_status
from engine.cases.duplicates import DUPLICATE_MEMORY, CaseStore
from engine.cases.records import CaseRecord, StatusRejected, StatusUpdate
from engine.classify import classify_data
from engine.contracts import Classified, to_json
from engine.rules import RuleSet
from engine.rules.load import load_rules
from engine.runtime import metrics
from engine.runtime.settings import Settings
from engine.runtime.workers import route
from engine.runtime.workers.reload import RulesHolder
from engine.runtime.workers.route_state import (
    BatchTally,
    CaseLoader,
    WorkerStopped,
    headers_for,
    murmur2,
    next_offsets,
    partition_for,
    state_counts,
)

RULES = Path(__file__).resolve().parents[2] / "rules"
NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return load_rules(RULES)


def classified(ruleset: RuleSet, channel_id: str, lat: float = 30.3353,
               minutes: int = 0) -> Classified:
    record = classify_data(ruleset, {
        "channel": "hotline", "channel_id": channel_id, "description": "路边垃圾成堆没人清",
        "reported_at": (NOW + timedelta(minutes=minutes)).isoformat(),
        "location": {"lat": lat, "lon": 120.016}}, NOW)
    assert isinstance(record, Classified)
    return record


# --- partitioning ----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "signed"), [
    # org.apache.kafka.common.utils.UtilsTest#testMurmur2
    ("21", -973932308), ("foobar", -790332482), ("a-little-bit-long-string", -985981536),
    ("a-little-bit-longer-string", -1486304829),
    ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971), ("abc", 479470107)])
def test_murmur2_is_kafkas(text: str, signed: int) -> None:
    assert murmur2(text.encode()) == signed & 0xFFFFFFFF


def test_partition_for_matches_librdkafkas_murmur2_partitioner() -> None:
    # observed with confluent-kafka (partitioner murmur2_random) on a 6-partition topic
    seen = {"330110005": 2, "330110001": 0, "330110": 3, "330110014": 4, "330110004": 1}
    assert {key: partition_for(key, 6) for key in seen} == seen


# --- rebuilding the store --------------------------------------------------------------------

def test_the_loader_keeps_the_latest_record_of_owned_townships_only(ruleset: RuleSet) -> None:
    store = CaseStore()
    opened = on_classified(ruleset, store, classified(ruleset, "L-1"), NOW).case
    assert opened is not None
    merged = on_classified(ruleset, store, classified(ruleset, "L-2", 30.33539, 5), NOW).case
    assert merged is not None and len(merged.incident_ids) == 2
    mine = partition_for(opened.partition_key, 6)
    other = opened.model_copy(update={"case_id": "330110001-aaaaaaaaaaaa",
                                      "partition_key": "330110001"})
    assert partition_for("330110001", 6) != mine

    loader = CaseLoader(frozenset({mine}), 6)
    for case in (opened, other, merged):
        loader.add(case.case_id.encode(), to_json(case))
    loader.add(b"330110005-bbbbbbbbbbbb", b"{not json")
    rebuilt = loader.store()
    assert loader.seen == 4 and loader.bad == 1
    assert [c.incident_ids for c in rebuilt.cases()] == [merged.incident_ids]
    assert rebuilt.get("330110001", other.case_id) is None

    everything = CaseLoader(None, 6)
    for case in (opened, other):
        everything.add(None, to_json(case))  # no key: the value is parsed to learn the case
    assert len(everything.store()) == 2


def test_closed_cases_leave_the_live_set_but_their_incidents_stay_known(
        ruleset: RuleSet) -> None:
    store = CaseStore()
    case = on_classified(ruleset, store, classified(ruleset, "C-1"), NOW).case
    assert case is not None
    closed = case.model_copy(update={"state": "closed"})
    loader = CaseLoader(None, 6)
    loader.add(case.case_id.encode(), to_json(case))
    loader.add(case.case_id.encode(), to_json(closed))
    rebuilt = loader.store(now=NOW)
    assert len(rebuilt) == 0
    assert rebuilt.case_of_incident == {case.incident_ids[0]: case.case_id}
    again = on_classified(ruleset, rebuilt, classified(ruleset, "C-1"), NOW)
    assert again.outcome == "duplicate" and again.outputs == []
    # ...for DUPLICATE_MEMORY after closing, in a rebuild and in a running worker alike
    later = NOW + DUPLICATE_MEMORY + timedelta(days=1)
    assert loader.store(now=later).case_of_incident == {}
    store.put(closed)
    assert store.forget_closed(NOW) == 0 and case.incident_ids[0] in store.case_of_incident
    assert store.forget_closed(later) == 1 and store.case_of_incident == {}

    tombstoned = CaseLoader(None, 6)
    tombstoned.add(case.case_id.encode(), to_json(case))
    tombstoned.add(case.case_id.encode(), None)
    assert len(tombstoned.store()) == 0 and tombstoned.store().case_of_incident == {}


# --- offsets, headers, tallies ---------------------------------------------------------------

def test_next_offsets_commit_one_past_the_last_record_per_partition() -> None:
    assert next_offsets([("a", 0, 5), ("a", 0, 7), ("a", 1, 0), ("b", 0, 3), ("a", 0, 6)]) == {
        ("a", 0): 8, ("a", 1): 1, ("b", 0): 4}
    assert next_offsets([]) == {}


def test_headers_carry_the_schema_and_the_revision_in_the_record(ruleset: RuleSet) -> None:
    result = on_classified(ruleset, CaseStore(), classified(ruleset, "H-1"), NOW)
    assignment = result.outputs[0].value
    assert headers_for(assignment, "serving") == [
        ("schema", b"griddispatch.assignment/1"),
        ("rules-revision", ruleset.revision.encode())]
    rejected = StatusRejected(reason="malformed", detail="x", raw="x", received_at=NOW)
    assert headers_for(rejected, "serving") == [("schema", b"griddispatch.status-rejected/1"),
                                                ("rules-revision", b"serving")]


def test_a_case_records_header_carries_the_same_timer_entry_its_json_gives(
        ruleset: RuleSet) -> None:
    """The timer worker and a rebuild trust the header instead of the record: both ways
    must schedule the same bytes, for a case with timers and for one without."""
    from engine.contracts import to_json
    from engine.runtime import timer_plan
    from engine.sla.timer_decisions import case_plan

    store = CaseStore()
    case = on_classified(ruleset, store, classified(ruleset, "H-2"), NOW).case
    assert case is not None and case.sla is not None and case.sla.timers
    closed = case.model_copy(update={"state": "closed", "sla": case.sla.model_copy(
        update={"timers": []})})
    for record in (case, closed):
        headers = headers_for(record, "serving")
        assert [name for name, _ in headers] == ["schema", "rules-revision",
                                                 timer_plan.INDEX_HEADER]
        parsed = case_plan(to_json(record))
        assert parsed is not None
        from_json = timer_plan.entry(parsed.version, parsed.timers, parsed.dues_ms,
                                     parsed.summary)
        assert timer_plan.from_headers(headers) == from_json
    assert timer_plan.from_headers(headers_for(closed, "serving")).pairs == b""  # type: ignore[union-attr]
    assert timer_plan.from_headers([(timer_plan.INDEX_HEADER, b"garbled")]) is None
    assert timer_plan.from_headers([("timer-index/other-format", b"1\n\n")]) is None


def test_the_tally_counts_outcomes_recipients_and_latency(ruleset: RuleSet) -> None:
    store, tally = CaseStore(), BatchTally()
    first = classified(ruleset, "T-1")
    tally.add(on_classified(ruleset, store, first, NOW + timedelta(seconds=3)),
              first.reported_at)
    tally.add(on_classified(ruleset, store, classified(ruleset, "T-2", 30.33539, 1), NOW))
    tally.add(on_status(ruleset, store, b"garbage", NOW))
    assert tally.outcomes == {"assigned": 1, "merged": 1, "rejected": 1}
    assert sum(tally.assignments.values()) == 2
    assert tally.latencies == [3.0]
    assert state_counts(store) == {"dispatched": 1, "accepted": 0, "resolved": 0,
                                   "reopened": 0}


# --- the transaction loop, over fake clients -------------------------------------------------

class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        self._t, self._p, self._o, self._v = topic, partition, offset, value

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes:
        return self._v

    def key(self) -> bytes:
        return b""

    def error(self) -> None:
        return None


class FakeProducer:
    def __init__(self, fail_commit: KafkaError | None = None) -> None:
        self.calls: list[str] = []
        self.produced: list[tuple[str, bytes, list[Any]]] = []
        self.offsets: list[TopicPartition] = []
        self.fail_commit = fail_commit

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def produce(self, topic: str, key: bytes, value: bytes, headers: list[Any]) -> None:
        self.produced.append((topic, key, headers))

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], meta: Any,
                                    timeout: float) -> None:
        self.offsets = offsets

    def commit_transaction(self, timeout: float) -> None:
        if self.fail_commit is not None:
            raise KafkaException(self.fail_commit)
        self.calls.append("commit")

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort")

    def poll(self, timeout: float) -> int:
        return 0


class FakeConsumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[str, int, int]] = []

    def consumer_group_metadata(self) -> object:
        return object()

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("p.incidents.classified", 0),
                TopicPartition("p.assignments.status", 1)]

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition(partitions[0].topic, 0, 41),
                TopicPartition(partitions[1].topic, 1, -1001)]

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[route.RouteWorker]:
    monkeypatch.setattr(route, "load_case_state", lambda settings, loader: None)  # topic: empty
    monkeypatch.setattr(route, "ABORT_BACKOFF_SECONDS", 0.0)
    settings = Settings(topic_prefix="p.", rules_dir=RULES)
    yield route.RouteWorker(settings, RulesHolder(RULES), "0",
                            clients=(FakeProducer(), FakeConsumer()))  # type: ignore[arg-type]


def _batch(ruleset: RuleSet) -> list[Any]:
    record = classified(ruleset, "W-1")
    return [FakeMessage("p.incidents.classified", 0, 41, to_json(record)),
            FakeMessage("p.incidents.classified", 0, 42, b"{broken"),
            FakeMessage("p.assignments.status", 0, 9, to_json(StatusUpdate(
                case_id="330110005-000000000000", department="x", action="accepted", at=NOW)))]


def _value(counter: Any, **labels: str) -> float:
    return float(counter.labels(**labels)._value.get())


def test_a_batch_is_one_transaction_with_its_outputs_and_offsets(
        worker: route.RouteWorker, ruleset: RuleSet) -> None:
    producer = worker.producer
    assert isinstance(producer, FakeProducer)
    before = _value(metrics.ROUTE_RECORDS, outcome="assigned")
    worker._process(_batch(ruleset))
    assert producer.calls == ["begin", "commit"]
    topics = [topic for topic, _, _ in producer.produced]
    assert topics == ["p.assignments.330110005.zhzf", "p.cases", "p.assignments.status.rejected"]
    assert {(tp.topic, tp.partition, tp.offset) for tp in producer.offsets} == {
        ("p.incidents.classified", 0, 43), ("p.assignments.status", 0, 10)}
    assert _value(metrics.ROUTE_RECORDS, outcome="assigned") == before + 1
    assert len(worker.store) == 1


def test_an_aborted_batch_leaves_no_state_and_rewinds_to_the_committed_offsets(
        worker: route.RouteWorker, ruleset: RuleSet) -> None:
    producer = worker.producer
    assert isinstance(producer, FakeProducer)
    producer.fail_commit = KafkaError(KafkaError._TIMED_OUT, "commit", txn_requires_abort=True)
    worker.owned = frozenset({0})
    aborted = _value(metrics.ROUTE_TRANSACTIONS, outcome="aborted")
    assigned = _value(metrics.ROUTE_RECORDS, outcome="assigned")
    worker._process(_batch(ruleset))
    assert producer.calls == ["begin", "abort"]
    assert len(worker.store) == 0, "the aborted case must not stay in memory"
    assert isinstance(worker.consumer, FakeConsumer)
    assert worker.consumer.seeks == [("p.incidents.classified", 0, 41),
                                     ("p.assignments.status", 1, OFFSET_BEGINNING)]
    assert _value(metrics.ROUTE_TRANSACTIONS, outcome="aborted") == aborted + 1
    assert _value(metrics.ROUTE_RECORDS, outcome="assigned") == assigned  # not counted

    producer.fail_commit = KafkaError(KafkaError._FENCED, "fenced", fatal=True)
    with pytest.raises(WorkerStopped, match="same --instance"):
        worker._process(_batch(ruleset))


def test_a_case_record_round_trips_through_the_wire_form(ruleset: RuleSet) -> None:
    case = on_classified(ruleset, CaseStore(), classified(ruleset, "R-1"), NOW).case
    assert case is not None
    assert CaseRecord.model_validate_json(to_json(case)) == case



class Trickle:
    """A consumer whose records arrive over time: ``arrivals`` are (seconds after the first
    poll, message); ``consume`` returns what has arrived, waiting up to its timeout for one."""

    def __init__(self, arrivals: list[tuple[float, str]]) -> None:
        self.arrivals = sorted(arrivals)
        self.start = 0.0

    def _arrived(self, limit: int) -> list[str]:
        now = time.monotonic() - self.start
        ready = [m for at, m in self.arrivals if at <= now][:limit]
        self.arrivals = self.arrivals[len(ready):]
        return ready

    def poll(self, timeout: float) -> str | None:
        self.start = time.monotonic()
        got = self._arrived(1)
        return got[0] if got else None

    def consume(self, limit: int, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            got = self._arrived(limit)
            if len(got) == limit or time.monotonic() >= deadline:
                return got
            if got:
                self.arrivals = [(0.0, m) for m in got] + self.arrivals  # put back, wait on
            time.sleep(0.002)


def batch_of(worker: route.RouteWorker, arrivals: list[tuple[float, str]], linger: float,
             batch_max: int = 500) -> list[str]:
    worker.consumer = Trickle(arrivals)  # type: ignore[assignment]
    worker.linger, worker.batch_max = linger, batch_max
    return worker._next_batch()  # type: ignore[return-value]


def test_a_batch_takes_what_is_queued_and_lingers_only_under_load(
        worker: route.RouteWorker) -> None:
    queued = [(0.0, f"{i:02d}") for i in range(route.LINGER_FROM)]
    arrivals = [*queued, (0.15, "late")]
    names = [m for _, m in queued]
    assert batch_of(worker, arrivals, linger=0.0) == names  # greedy: no wait
    assert batch_of(worker, arrivals, linger=0.3) == [*names, "late"]
    assert batch_of(worker, arrivals, linger=0.05) == names  # bounded by the time
    assert batch_of(worker, [(0.0, f"{i:02d}") for i in range(40)], linger=0.3,
                    batch_max=20) == [f"{i:02d}" for i in range(20)]  # bounded by size, at once
    # a trickle (fewer queued than LINGER_FROM) never waits for the linger
    started = time.monotonic()
    assert batch_of(worker, [(0.0, "a"), (0.0, "b"), (0.15, "late")], linger=0.3) == ["a", "b"]
    assert time.monotonic() - started < 0.1
