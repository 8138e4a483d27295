"""``griddispatch worker timers``: mirror case timer plans into Redis, fire what falls due.

Two duties in one loop, both idempotent so any number of workers can run:
- consume ``cases`` (a consumer group: partitions spread over workers) and write each case's
  plan into the Redis index; commit offsets only after Redis has it;
- claim due timers (the store's atomic claim: each timer goes to one worker), publish each
  escalation to ``escalations`` and ``escalations.<recipient>``, and acknowledge only after
  the broker has both (a worker that dies in between leaves the claim to expire and be fired
  again by another, under the same ``escalation_id`` so receivers can drop the repeat).

When the index is missing (Redis lost, or first start) the worker rebuilds it from Kafka; a
periodic audit compares every open case on the topic with the index and rebuilds on a gap.
"""

from __future__ import annotations

import logging
import signal
import time
from datetime import UTC, datetime

import redis
from confluent_kafka import KafkaError, KafkaException, Message

from engine.cases.records import SCHEMA_STATUS
from engine.reference.departments import DepartmentRegistry
from engine.runtime import kafka, lag, metrics
from engine.runtime.redis_clients import redis_client
from engine.runtime.settings import Settings
from engine.runtime.timer_restore import audit, mirror, rebuild
from engine.runtime.timer_store import DueCase, TimerStore
from engine.runtime.workers.reload import RulesHolder, export_calendar, export_departments
from engine.sla.model import SlaTimer
from engine.sla.timer_decisions import escalation_for, status_update_for

log = logging.getLogger("griddispatch.timers")
GROUP = "griddispatch-timers"
RELOAD_POLL_SECONDS = 2.0
WORKER = "timers"
CASES, ESCALATIONS, STATUS = "cases", "escalations", "assignments.status"
BATCH, POLL_SECONDS = 500, 0.2
COUNT_EVERY_SECONDS = 15.0  # the pending gauge: 16 ZCARDs


class TimerWorker:
    def __init__(self, settings: Settings, holder: RulesHolder, store: TimerStore,
                 audit_every: float = 300.0) -> None:
        self.settings, self.holder, self.store = settings, holder, store
        self.audit_every = audit_every
        self.stopping = False
        self.consumer = kafka.consumer(settings, GROUP)  # kafka.consumer adds the prefix
        self.producer = kafka.producer(settings)

    def stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def run(self) -> int:
        self.consumer.subscribe([self.settings.topic(CASES)])
        # The first audit soon after start: it also feeds the open and breached case gauges
        # that the breach alert divides, which would otherwise have no series for minutes.
        next_audit = time.monotonic() + min(self.audit_every, 30.0)
        next_count = next_reload = time.monotonic()
        try:
            while not self.stopping:
                if not self.store.is_built():
                    self._rebuild()
                self._mirror(self.consumer.consume(BATCH, POLL_SECONDS))
                self._fire()
                if time.monotonic() >= next_reload:
                    # The calendar gauge, the department names and the escalations' recipient
                    # names come from the rules: an entered holiday notice must show without a
                    # restart (it did not: the alert stayed until the worker was restarted).
                    self.holder.maybe_reload()
                    next_reload = time.monotonic() + RELOAD_POLL_SECONDS
                if time.monotonic() >= next_count:
                    metrics.TIMERS_PENDING.set(self.store.pending())
                    next_count = time.monotonic() + COUNT_EVERY_SECONDS
                if time.monotonic() >= next_audit:
                    self._audit()
                    next_audit = time.monotonic() + self.audit_every
        except (KafkaException, kafka.KafkaUnavailable, redis.RedisError) as exc:
            log.error("timer worker stopping: %s", exc)
            return 1
        finally:
            self.consumer.close()
            self.producer.flush(5)
        log.info("timer worker stopped cleanly after a signal")
        return 0

    def _rebuild(self) -> None:
        report = rebuild(self.settings, self.store)
        if report is not None:
            metrics.TIMERS_REPAIRED.labels("rebuild").inc(report.open_cases)
            log.warning("timer index was empty: rebuilt %d open cases from %d case records "
                        "(%d escalations already fired) in %.1fs", report.open_cases,
                        report.records, report.fired, report.seconds)

    def _audit(self) -> None:
        export_departments(self.holder)  # after any reload since the last audit
        missing, open_by, breached_by = audit(self.settings, self.store)
        for gauge, counts in ((metrics.SLA_CASES, open_by),
                              (metrics.SLA_BREACHED_CASES, breached_by)):
            gauge.clear()
            for (department, state), count in counts.items():
                gauge.labels(department, state).set(count)
        if missing:
            metrics.TIMERS_REPAIRED.labels("audit").inc(missing)
            log.warning("audit: %d open cases had missing or outdated timers; rebuilt", missing)

    def _mirror(self, messages: list[Message]) -> None:
        records = [m for m in messages if m.error() is None]
        for m in messages:
            error = m.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                log.warning("cases consumer: %s", error)
        if not records:
            return
        pipe = self.store.pipeline()
        for message in records:
            if mirror(self.store, message, pipe) is None and message.value() is not None:
                metrics.WORKER_ERRORS.labels(WORKER, "not_a_case").inc()
        pipe.execute()
        self.consumer.commit(asynchronous=False)

    def _fire(self) -> None:
        if not self.store.can_fire():
            return
        now = datetime.now(UTC)
        claimed = self.store.claim(now)
        if not claimed:
            return
        cases = self.store.resolve(claimed, now)
        failed: dict[str, str] = {}
        departments = self.holder.current.departments
        for case in cases:
            for timer in case.timers:
                self._publish(case, timer, departments, now, failed)
        self.producer.flush(30)
        for case in cases:
            if case.stale:
                self.store.ack(case)
                metrics.TIMER_FIRES.labels("stale").inc()
                continue
            published = []
            for timer in case.timers:
                eid = timer.escalation_id
                if eid in failed:  # back in the index at once: fired on a later pass
                    log.warning("escalation %s of case %s not published (%s): will retry",
                                eid, case.claimed.case_id, failed[eid])
                    continue
                published.append(eid)
                metrics.TIMER_FIRES.labels("fired").inc()
                metrics.TIMER_LATENESS.observe(max(0.0, (now - timer.due).total_seconds()))
                metrics.SLA_ESCALATIONS.labels(str(case.summary.get("lead") or "-"),
                                               timer.limit, timer.step).inc()
            self.store.ack(case, published)

    def _publish(self, case: DueCase, timer: SlaTimer, departments: DepartmentRegistry,
                 now: datetime, failed: dict[str, str]) -> None:
        eid = timer.escalation_id

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failed[eid] = str(err)

        update = status_update_for(case.claimed.case_id, timer, now)
        if update is not None:  # an unverified resolution closed, a breach supervised: as
            # the route worker records any centre's update (one owner of case state)
            self.producer.produce(self.settings.topic(STATUS),
                                  update.model_dump_json(by_alias=True).encode(),
                                  str(case.summary["partition_key"]).encode(),
                                  headers=[("schema", SCHEMA_STATUS.encode())],
                                  on_delivery=delivered)
            return
        record = escalation_for(case.claimed.case_id, case.claimed.version, timer,
                                case.summary, departments, now)
        value = record.model_dump_json(by_alias=True).encode()
        key = case.claimed.case_id.encode()
        headers: list[tuple[str, str | bytes | None]] = [
            ("schema", b"griddispatch.escalation/1")]
        for topic in (ESCALATIONS, f"{ESCALATIONS}.{timer.recipient}"):
            self.producer.produce(self.settings.topic(topic), value, key, headers=headers,
                                  on_delivery=delivered)


def run(settings: Settings, metrics_port: int | None, audit_every: float) -> int:
    """Run until SIGTERM / SIGINT."""
    holder = RulesHolder(settings.rules_dir)
    client = redis_client(settings.redis_url)
    store = TimerStore(client, settings.topic_prefix)
    export_calendar(holder)
    export_departments(holder)
    if metrics_port is not None:
        metrics.serve_metrics(metrics_port, "timers")
        log.info("metrics on http://127.0.0.1:%d/metrics", metrics_port)
        lag.start_sampler(settings, GROUP, (CASES,), WORKER)
    worker = TimerWorker(settings, holder, store, audit_every)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    log.info("timer worker: %s → Redis timers → %s, %s.<dept>", settings.topic(CASES),
             settings.topic(ESCALATIONS), settings.topic(ESCALATIONS))
    return worker.run()
