"""The ``route`` worker: incidents.classified + assignments.status → assignments.<dept>, cases.

For every classified incident it opens a case (or merges the report into an open duplicate)
and publishes one assignment per recipient on ``assignments.<dept>`` (key: case id) and the
case's new state on the compacted ``cases`` topic; department status updates move the case
through its lifecycle (``engine.cases.dispatch`` holds the pure steps; this module moves
records). Unusable status updates go to ``assignments.status.rejected``.

Exactly-once, and why not Faust: a confluent-kafka transactional producer. Each batch is
one Kafka transaction holding the batch's outputs and its consumed offsets
(``send_offsets_to_transaction`` with the consumer's group metadata, KIP-447), so outputs
and progress commit or vanish together; readers use ``isolation.level=read_committed``.
Faust's ``processing_guarantee="exactly_once"`` has open reports of duplicates and crashes on
rebalance (faust-streaming #517, #323, #440, #177; docs/decisions.md "Route on transactions");
the kill -9 test (tests/integration/test_route_crash.py) is the proof for ours. On top,
``on_classified`` is idempotent on incident id: a re-sent report joins nothing and dispatches
nothing.

State: a ``CaseStore`` of the townships this worker owns, rebuilt from ``cases`` (read
committed, up to the end offsets of the moment: see ``load_case_state``) on every partition
assignment and after every aborted transaction, so it never holds state that Kafka did not
commit. Both inputs are keyed by township code and have the same partition count; the range
assignor gives partition p of both topics to one member, so a township's reports and status
updates meet in one process. Cases of townships owned by others are left out of the store
(a mis-keyed status update is then ``unknown_case``, never applied to a stale copy).

Instances: ``--instance`` (default ``0``) names the transactional id and the static group
membership (``group.instance.id``). It must be stable across restarts of one instance and
distinct between instances running at once: a restarted instance then fences its killed
predecessor at once (its open transaction is aborted by ``init_transactions``, and the group
hands it the old assignment without waiting for a session timeout).
"""

from __future__ import annotations

import gc
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from pydantic import ValidationError

from engine.cases.dispatch import StepResult, on_classified, on_status
from engine.cases.duplicates import DUPLICATE_MEMORY, CaseStore
from engine.contracts import Classified, to_json
from engine.rules import RuleSet
from engine.runtime import kafka, lag, metrics
from engine.runtime.settings import Settings
from engine.runtime.workers.reload import RulesHolder, export_calendar
from engine.runtime.workers.route_state import (
    BatchTally,
    CaseLoader,
    WorkerStopped,
    headers_for,
    kafka_log,
    load_case_state,
    next_offsets,
    state_counts,
)

WORKER, GROUP = "route", "griddispatch-route"
CLASSIFIED, STATUS = "incidents.classified", "assignments.status"
# Bounded batches: wait (up to POLL_SECONDS) for one record, take whatever else is already
# queued; when that alone is LINGER_FROM records or more (the worker is under load), keep
# taking what arrives for up to ``linger`` seconds after the first record, up to
# ``batch_max`` records: one transaction each. Greedy (linger 0, the default), a batch is what
# arrived during the previous transaction, so transactions grow with the load by themselves
# and a trickle waits for nothing (a fixed consume(BATCH, 0.5) cost ~400 ms p50). A linger
# shares each transaction's per-partition costs (produce, KIP-890 verification, commit marker
# on every department partition touched) among more records; lingering only under load keeps
# a trickle as fast as greedy batches. Why greedy stays the default: in the benchmark's curve
# (README "Bounded transactions"), once the broker was warmed and the order alternated, 50 ms
# gained nothing beyond the machine's drift in drains and doubled the p50 at 600/s.
BATCH, LINGER_SECONDS, POLL_SECONDS, RELOAD_POLL_SECONDS = 500, 0.0, 0.1, 2.0
LINGER_FROM = 16  # records already queued that mean "under load" (about 500/s here)
TXN_TIMEOUT, ABORT_BACKOFF_SECONDS = 30.0, 1.0
FORGET_EVERY_SECONDS = 3600.0  # closed cases older than DUPLICATE_MEMORY leave the store

log = logging.getLogger("griddispatch.route")


class RouteWorker:
    def __init__(self, settings: Settings, holder: RulesHolder, instance: str,
                 clients: tuple[Producer, Consumer] | None = None, *,
                 linger: float = LINGER_SECONDS, batch_max: int = BATCH) -> None:
        self.settings, self.holder = settings, holder
        self.linger, self.batch_max = linger, batch_max
        self.topics = {name: settings.topic(name) for name in (CLASSIFIED, STATUS)}
        self.store = CaseStore()
        self.owned: frozenset[int] = frozenset()
        self.partitions = 0
        self.stopping = self.reload_requested = False
        self.offsets_thread = ThreadPoolExecutor(1, thread_name_prefix="route-offsets")
        member = settings.topic(f"griddispatch-route-{instance}")
        # Static membership: a restart with the same id takes the old assignment back at once.
        # range: partition p of both inputs goes to one member (cooperative-sticky would not).
        self.producer, self.consumer = clients or (
            kafka.transactional_producer(settings, member, logger=kafka_log),
            kafka.consumer(settings, GROUP, logger=kafka_log, **{
                "group.instance.id": member, "partition.assignment.strategy": "range"}))

    # --- life cycle ----------------------------------------------------------------------

    def run(self) -> int:
        try:
            self.partitions = self._copartitioned()
            self._init_transactions()
            self.consumer.subscribe(list(self.topics.values()), on_assign=self._on_assign,
                                    on_revoke=self._on_revoke, on_lost=self._on_revoke)
            last_reload = last_forget = time.monotonic()
            while not self.stopping:
                if self.reload_requested or time.monotonic() - last_reload > RELOAD_POLL_SECONDS:
                    self._reload()
                    last_reload = time.monotonic()
                if time.monotonic() - last_forget > FORGET_EVERY_SECONDS:
                    self.store.forget_closed(datetime.now(UTC) - DUPLICATE_MEMORY)
                    last_forget = time.monotonic()
                records = [m for m in self._next_batch() if not self._is_error(m)]
                if records:
                    self._process(records)
        except (WorkerStopped, KafkaException) as exc:
            log.error("route worker stopping: %s", exc)
            return 1
        finally:
            self.offsets_thread.shutdown()
            self.consumer.close()
            self.producer.flush(5)
        log.info("route worker stopped cleanly after a signal")
        return 0

    def _next_batch(self) -> list[Message]:
        first = self.consumer.poll(POLL_SECONDS)
        if first is None:
            return []
        deadline = time.monotonic() + self.linger
        batch = [first, *self.consumer.consume(self.batch_max - 1, 0)]
        if len(batch) < LINGER_FROM:
            return batch
        while len(batch) < self.batch_max and (left := deadline - time.monotonic()) > 0:
            batch += self.consumer.consume(self.batch_max - len(batch), left)
        return batch

    def _init_transactions(self) -> None:
        """Fence a killed predecessor; retry what a just-created topic's broker says is
        temporary (NOT_LEADER_FOR_PARTITION, coordinator loading) instead of exiting."""
        deadline = time.monotonic() + 60
        while True:
            try:
                self.producer.init_transactions(30)
                return
            except KafkaException as exc:
                error = exc.args[0]
                if not error.retriable() or time.monotonic() > deadline:
                    raise
                log.warning("init_transactions: %s; retrying", error)
                time.sleep(1.0)

    def stop(self, signum: int, frame: object) -> None:
        """SIGTERM / SIGINT: the loop ends after committing the batch in hand (no logging
        here: a signal handler that logs can deadlock on the logging lock)."""
        self.stopping = True

    def _copartitioned(self) -> int:
        meta = self.consumer.list_topics(timeout=30).topics
        counts = {}
        for name, topic in self.topics.items():
            if topic not in meta or meta[topic].error is not None:
                raise WorkerStopped(f"topic {topic} does not exist: run 'griddispatch topics "
                                    "apply'")
            counts[name] = len(meta[topic].partitions)
        if len(set(counts.values())) != 1:
            raise WorkerStopped(f"{CLASSIFIED} and {STATUS} must have the same partition count "
                                f"(both keyed by township), got {counts}")
        return counts[CLASSIFIED]

    def _reload(self) -> None:
        forced, self.reload_requested = self.reload_requested, False
        try:
            self.holder.request_reload() if forced else self.holder.maybe_reload()
        except Exception:
            metrics.WORKER_ERRORS.labels(worker=WORKER, stage="reload").inc()
            log.exception("rules reload raised")

    def _is_error(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return False
        if error.fatal():
            raise WorkerStopped(f"fatal consumer error: {error}")
        log.warning("consumer: %s", error)
        return True

    # --- partitions and state ------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.owned = frozenset(tp.partition for tp in partitions
                               if tp.topic == self.topics[CLASSIFIED])
        # Committed offsets first: with read_committed the fetch waits until a previous
        # owner's pending transaction is finished (KIP-447), so the rebuild below sees it.
        consumer.committed(partitions, timeout=60)
        self._rebuild("assigned")

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.owned, self.store = frozenset(), CaseStore()

    def _rebuild(self, reason: str) -> None:
        started = time.monotonic()
        loader = CaseLoader(self.owned, self.partitions)
        if self.owned:
            load_case_state(self.settings, loader)
        self.store = loader.store()
        self._freeze_heap(collect=True)
        metrics.ROUTE_REBUILDS.labels(reason=reason).inc()
        self._gauge()
        log.info("case store rebuilt (%s) for partitions %s: %d records read, %d cases kept, "
                 "%d live, in %.2fs", reason, sorted(self.owned), loader.seen, len(loader.raw),
                 len(self.store), time.monotonic() - started)

    @staticmethod
    def _freeze_heap(collect: bool = False) -> None:
        """Move every object alive now out of the cyclic collector's reach.

        The case store holds millions of small objects that live for days and form no
        cycles (refcounting frees a replaced case). Left to the collector, each full
        collection walked all of them: pauses growing to ~1 s every few seconds with 35k
        open cases, half the worker's CPU, and the whole p99 at 1,000 reports/s. Frozen
        after every batch, the collector only ever sees one batch's new objects.
        ``gc.freeze`` itself is O(1). The price: cyclic garbage still uncollected at the end
        of a batch is never freed (the worker makes almost none; ``collect`` at a rebuild
        clears what is there before freezing).
        """
        if collect:
            gc.collect()
        gc.freeze()

    def _gauge(self) -> None:
        for state, count in state_counts(self.store).items():
            metrics.OPEN_CASES.labels(state=state).set(count)

    # --- one batch, one transaction ------------------------------------------------------

    def _process(self, records: list[Message]) -> None:
        ruleset, tally, dirty = self.holder.current, BatchTally(), False
        started = time.perf_counter()
        try:
            self.producer.begin_transaction()
            # The offsets are known before routing, and adding them to the transaction is two
            # round trips to the coordinators (~10 ms on a busy broker): done in a helper
            # thread while this one routes (librdkafka's produce() is thread-safe; this is
            # the only transactional call in flight, and commit waits for it).
            offsets = next_offsets((str(m.topic()), int(m.partition() or 0), int(m.offset() or 0))
                                   for m in records)
            adding = self.offsets_thread.submit(
                self.producer.send_offsets_to_transaction,
                [TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                self.consumer.consumer_group_metadata(), TXN_TIMEOUT)
            try:
                for message in records:
                    dirty |= not self._handle(ruleset, message, tally)
            finally:
                routed = time.perf_counter()
                adding.result()  # re-raises its KafkaException here
            offsets_sent = time.perf_counter()
            self._commit()
        except KafkaException as exc:
            self._abort(exc.args[0])
            return
        committed = time.perf_counter()
        metrics.ROUTE_BATCH_SECONDS.labels(phase="process").observe(routed - started)
        metrics.ROUTE_BATCH_SECONDS.labels(phase="offsets").observe(offsets_sent - routed)
        metrics.ROUTE_BATCH_SECONDS.labels(phase="commit").observe(committed - offsets_sent)
        metrics.ROUTE_BATCH_RECORDS.observe(len(records))
        self.producer.poll(0)  # serve delivery reports and librdkafka's log lines
        metrics.ROUTE_TRANSACTIONS.labels(outcome="committed").inc()
        for outcome, n in tally.outcomes.items():
            metrics.ROUTE_RECORDS.labels(outcome=outcome).inc(n)
        for (platform, department), n in tally.assignments.items():
            metrics.ASSIGNMENTS.labels(platform=platform, department=department).inc(n)
        for seconds in tally.latencies:
            metrics.ROUTE_SECONDS.observe(seconds)
        for stage, n in tally.errors.items():
            metrics.WORKER_ERRORS.labels(worker=WORKER, stage=stage).inc(n)
        if dirty:  # a step raised halfway: its store changes may have no output
            self._rebuild("step_error")
        self._gauge()
        self._freeze_heap()

    def _handle(self, ruleset: RuleSet, message: Message, tally: BatchTally) -> bool:
        """Route one record into the open transaction; False if it was skipped by an error."""
        now, raw, stage = datetime.now(UTC), message.value() or b"", "parse"
        reported_at = None
        try:
            result: StepResult
            if message.topic() == self.topics[CLASSIFIED]:
                try:
                    record = Classified.model_validate_json(raw)
                except ValidationError as exc:
                    tally.errors["parse"] += 1
                    log.error("skipped an unreadable record at %s[%s]@%s: %s", message.topic(),
                              message.partition(), message.offset(), str(exc)[:300])
                    return True
                stage, reported_at = "route", record.reported_at
                result = on_classified(ruleset, self.store, record, now)
            else:
                stage = "route"
                result = on_status(ruleset, self.store, raw, now)
        except Exception:
            tally.errors[stage] += 1
            log.exception("skipped the record at %s[%s]@%s (stage %s)", message.topic(),
                          message.partition(), message.offset(), stage)
            return False
        for out in result.outputs:
            self._produce(self.settings.topic(out.topic), out.key.encode(), to_json(out.value),
                          headers_for(out.value, ruleset.revision))
        tally.add(result, reported_at)
        return True

    def _produce(self, topic: str, key: bytes, value: bytes,
                 headers: list[tuple[str, str | bytes | None]]) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, headers=headers)
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self.producer.poll(0.1)

    def _commit(self) -> None:
        while True:
            try:
                self.producer.commit_transaction(TXN_TIMEOUT)
                return
            except KafkaException as exc:
                if not exc.args[0].retriable():
                    raise
                log.warning("commit failed, retrying: %s", exc.args[0])

    def _abort(self, error: KafkaError) -> None:
        """Abort, then return to the committed state: offsets and case store."""
        metrics.ROUTE_TRANSACTIONS.labels(outcome="aborted").inc()
        if error.fatal():
            raise WorkerStopped(f"the transactional producer is fenced or broken ({error}); "
                                "another route worker with the same --instance took over?")
        log.warning("transaction aborted (%s): rewinding to the committed offsets", error)
        for attempt in range(10):
            try:
                self.producer.abort_transaction(TXN_TIMEOUT)
                break
            except KafkaException as exc:
                if exc.args[0].fatal() or attempt == 9:
                    raise WorkerStopped(f"cannot abort the transaction: {exc.args[0]}") from exc
                if exc.args[0].code() == KafkaError._STATE:  # no transaction was open
                    break
                time.sleep(0.5)
        assignment = self.consumer.assignment()
        for tp in self.consumer.committed(assignment, timeout=60):
            if tp.offset < 0:
                tp.offset = OFFSET_BEGINNING
            self.consumer.seek(tp)
        self._rebuild("aborted")
        time.sleep(ABORT_BACKOFF_SECONDS)  # a failure that repeats (a missing topic) must not spin


def run(settings: Settings, instance: str, metrics_port: int | None,
        linger: float = LINGER_SECONDS, batch_max: int = BATCH) -> int:
    """Run until SIGTERM / SIGINT (exit 0 after committing the batch in hand)."""
    holder = RulesHolder(settings.rules_dir)  # FileProblems before touching Kafka
    kafka_log.setLevel(logging.WARNING)
    export_calendar(holder)
    if metrics_port is not None:
        metrics.serve_metrics(metrics_port, "route")
        log.info("metrics on http://127.0.0.1:%d/metrics", metrics_port)
        lag.start_sampler(settings, GROUP, (CLASSIFIED, STATUS), WORKER)
    worker = RouteWorker(settings, holder, instance, linger=linger, batch_max=batch_max)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    signal.signal(signal.SIGHUP, lambda signum, frame: setattr(worker, "reload_requested", True))
    log.info("route worker %s: %s + %s → assignments.<dept>, cases", instance,
             *worker.topics.values())
    return worker.run()
