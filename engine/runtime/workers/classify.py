"""The ``classify`` stream worker: incidents.reported → classified | triage | rejected.

A Faust app with one agent. For each batch of raw reports (up to 64, or what arrived in 5 ms)
it calls the pure ``classify_many`` (``classify_raw`` for each, the model scoring the batch's
texts at once) with the
serving rule set and sends exactly one record to the topic of its type, keyed by incident id
(so one incident always lands on one partition downstream) and with ``schema`` and
``rules-revision`` headers (so consumers can route or refuse without parsing the value).

Delivery model, at-least-once plus deterministic ids, and why not Faust's exactly_once:
classify is a pure function of (record, rule set). ``received_at`` is taken from the intake
record's Kafka timestamp, not the wall clock, so a record replayed after a crash (consumed
again because its offset was not committed yet) yields a byte-identical output record with
the same ``incident_id``, and downstream consumers dedup on that id. Faust commits an offset
only after flushing the producer, so nothing acknowledged is lost. Faust's
``processing_guarantee="exactly_once"`` has open reports of duplicates and crashes on
rebalance (faust-streaming #517, #323, #440, #177; docs/decisions.md "Classify at-least-once")
and would buy nothing here.

Workers never die on data: ``classify_raw`` turns bad input into ``Rejected`` records, and
any unexpected error for one record is logged with its offset, counted in
``griddispatch_worker_errors_total{worker="classify",stage=...}`` and skipped.

Hot reload (``engine.runtime.workers.reload``): a 2 s timer polls a cheap fingerprint of the rules
folder and SIGHUP forces a load; loads run in a thread so the stream keeps flowing meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust

from engine.cases.lifecycle import partition_key
from engine.classify import classify_many, classify_raw
from engine.contracts import Classified, Outcome, Rejected, Triage, to_json
from engine.runtime import kafka, lag, metrics
from engine.runtime.settings import Settings
from engine.runtime.workers.reload import RulesHolder

WORKER = "classify"
RELOAD_POLL_SECONDS = 2.0
# Reports classified together: the model scores a batch's texts in one pass, about a third of
# the cost of one by one at 64 (make bench, "model"). A batch waits at most 5 ms to fill, so a
# quiet hour adds no more than that to a report's way.
BATCH_MAX = 64
BATCH_WITHIN_SECONDS = 0.005
SOURCE_TOPIC = "incidents.reported"
OUTPUT_TOPICS: dict[type[Outcome], str] = {
    Classified: "incidents.classified",
    Triage: "incidents.triage",
    Rejected: "incidents.rejected",
}
OUTCOMES: dict[type[Outcome], str] = {Classified: "classified", Triage: "triage",
                                      Rejected: "rejected"}

log = logging.getLogger("griddispatch.classify")


def record_key(record: Outcome) -> bytes:
    """Classified records are keyed by place (township code), so the route worker that owns
    a township sees all its reports and can merge duplicates; others by incident id."""
    if isinstance(record, Classified):
        return partition_key(record.division_chain).encode("utf-8")
    key = record.incident_id or record.channel or "unknown"
    return key.encode("utf-8")


def record_headers(record: Outcome) -> list[tuple[str, bytes]]:
    return [("schema", record.schema_.encode()),
            ("rules-revision", record.rules_revision.encode())]


def received_at_of(timestamp: float | None) -> datetime:
    """The intake record's timestamp (seconds), so a replay decides exactly as before."""
    if timestamp and timestamp > 0:
        return datetime.fromtimestamp(timestamp, UTC)
    return datetime.now(UTC)


def count(record: Outcome) -> None:
    metrics.CLASSIFY_RECORDS.labels(outcome=OUTCOMES[type(record)]).inc()
    if isinstance(record, Triage):
        metrics.TRIAGE.labels(reason=record.reason).inc()
        if record.urgent:
            metrics.URGENT_TRIAGE.labels(reason=record.reason).inc()
    elif isinstance(record, Classified):
        metrics.CLASSIFIED_BY.labels(by=record.classified_by).inc()
    elif isinstance(record, Rejected):
        metrics.REJECTED.labels(reason=record.reason).inc()


def faust_app(settings: Settings, app_id: str, datadir: Path | None = None) -> Any:
    """The Faust app of the classify stage, without its agent: what the Faust path costs
    before any classifying (``tests/bench/faust_floor.py`` runs it with an agent that only
    forwards each record).

    ``datadir``: Faust insists on a data directory (for tables, which classify has none of);
    by default it goes under the system temp folder instead of littering the working folder.
    """
    logging.getLogger("aiokafka").setLevel(logging.WARNING)  # per-rebalance chatter at INFO
    return faust.App(
        app_id,
        broker=kafka.faust_broker_urls(settings.kafka_bootstrap),
        broker_credentials=kafka.faust_credentials(settings),
        value_serializer="raw",
        key_serializer="raw",
        # Our prometheus server (engine.runtime.metrics) replaces Faust's web server and sensors.
        web_enabled=False,
        # Topics are code (`griddispatch topics apply`); the broker's auto-create is off and
        # we use no on_leader timers, so Faust must neither declare topics nor a leader topic.
        topic_allow_declare=False,
        topic_disable_leader=True,
        processing_guarantee="at_least_once",
        stream_wait_empty=False,
        # aiokafka's default linger is 0: under load every record went out in its own
        # produce request (a socket write each: 15 % of the worker's CPU, and as much again
        # on the broker). 5 ms, as for the confluent-kafka producers (engine/runtime/kafka.py).
        producer_linger=0.005,
        consumer_auto_offset_reset="earliest",
        datadir=datadir or Path(tempfile.gettempdir()) / "griddispatch-faust" / app_id,
    )


def build_app(settings: Settings, rules_dir: Path, metrics_port: int | None, *,
              datadir: Path | None = None) -> Any:
    """The classify Faust app; loading the rules here makes a broken rules folder fail now.

    Raises ``FileProblems`` for invalid rules and ``OSError`` when the metrics port is taken.
    """
    holder = RulesHolder(rules_dir)
    app = faust_app(settings, settings.topic("griddispatch-classify"), datadir)
    source = app.topic(settings.topic(SOURCE_TOPIC))
    sinks = {kind: app.topic(settings.topic(name)) for kind, name in OUTPUT_TOPICS.items()}

    async def handle(events: list[Any]) -> None:
        """Classify a batch in one call (the model scores its texts together), then send
        each record; a batch that fails is retried record by record, so one bad record
        costs only itself."""
        inputs = [(event.value if event.value is not None else b"",
                   received_at_of(event.message.timestamp)) for event in events]
        started = time.perf_counter()
        try:
            records: list[Outcome | None] = list(classify_many(holder.current, inputs))
        except Exception:
            records = [None] * len(events)
        each = (time.perf_counter() - started) / len(events)
        for event, (raw, at), record in zip(events, inputs, records, strict=True):
            message = event.message
            stage = "classify"
            try:
                if record is None:
                    started = time.perf_counter()
                    record = classify_raw(holder.current, raw, at)
                    each = time.perf_counter() - started
                metrics.CLASSIFY_SECONDS.observe(each)
                stage = "produce"
                # Awaiting send() hands the record to the producer; Faust flushes the
                # producer before it commits offsets, so an offset is never committed ahead
                # of its output (take_events acks the batch's events after this returns).
                await sinks[type(record)].send(key=record_key(record), value=to_json(record),
                                               headers=record_headers(record))
                count(record)
            except Exception:
                metrics.WORKER_ERRORS.labels(worker=WORKER, stage=stage).inc()
                log.exception("skipped the record at %s[%s]@%s (stage %s)", message.topic,
                              message.partition, message.offset, stage)

    async def classify(stream: Any) -> None:
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_SECONDS):
            await handle(list(events))

    async def poll_rules() -> None:
        await _reload_in_thread(holder.maybe_reload)

    if metrics_port is not None:
        # Now, not in a Faust task: tasks start only once the group has assigned partitions,
        # and /metrics must answer (and a taken port must fail) before Kafka is reachable.
        metrics.serve_metrics(metrics_port, "classify")
        log.info("metrics on http://127.0.0.1:%d/metrics", metrics_port)
        # Faust's consumer group is the app id (engine.runtime.lag: the group's own lag).
        lag.start_sampler(settings, "griddispatch-classify", [SOURCE_TOPIC], WORKER)
    app.agent(source, name=WORKER)(classify)
    app.timer(RELOAD_POLL_SECONDS)(poll_rules)
    _reload_on_sighup(app.loop, holder)
    return app


def _reload_on_sighup(loop: asyncio.AbstractEventLoop, holder: RulesHolder) -> None:
    """SIGHUP forces a reload; installed now on the loop the Faust worker will run.

    Not in an ``@app.task``: Faust starts tasks only after the first partition assignment,
    and until then SIGHUP's default action would kill the worker.
    """
    try:
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(
            _reload_in_thread(holder.request_reload), loop=loop))
    except (ValueError, RuntimeError, NotImplementedError) as exc:  # not the main thread
        log.warning("SIGHUP will not reload the rules here (%s); the 2 s poll still does", exc)


async def _reload_in_thread(reload: Any) -> None:
    """Run a (blocking) reload off the event loop; a failure is counted, never raised."""
    try:
        await asyncio.get_running_loop().run_in_executor(None, reload)
    except Exception:
        metrics.WORKER_ERRORS.labels(worker=WORKER, stage="reload").inc()
        log.exception("rules reload raised")
