"""Consumer lag of our own worker groups, as ``griddispatch_consumer_lag{group,topic}``.

Why the workers measure it themselves: lag is the one number that says a stage is falling
behind before anyone notices late assignments, and Kafka keeps it only implicitly (committed
offsets on one side, end offsets on the other). A separate exporter would be one more process
to run; a small thread beside ``/metrics`` in each worker asks the cluster every 15 s instead.

What "lag" means here: per partition, the last stable offset (``read_committed`` end: what
a transactional reader can reach; equal to the high watermark on topics without
transactions) minus the group's committed offset, summed over the topic's partitions. A
partition the group has not committed on yet counts from its log start, which is where our
consumers begin (``auto.offset.reset=earliest``); a committed offset that retention has
already deleted counts from the log start too (those records are gone, not pending).

Every member of a group reports the whole group's lag, so several instances report the same
number: aggregate with ``max by (group, topic)``, never ``sum``. Labels carry the names as
the cluster knows them (with any ``--topic-prefix``), so they match ``kafka-consumer-groups``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping

from confluent_kafka import IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from engine.runtime import kafka, metrics
from engine.runtime.settings import Settings

Partition = tuple[str, int]
COORDINATOR_MOVING = (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
                      KafkaError.COORDINATOR_LOAD_IN_PROGRESS)
DEFAULT_INTERVAL = 15.0
REQUEST_TIMEOUT = 10.0

log = logging.getLogger("griddispatch.lag")


def topic_lag(committed: Mapping[Partition, int], earliest: Mapping[Partition, int],
              latest: Mapping[Partition, int]) -> dict[str, int]:
    """Lag per topic from offsets per partition (the pure part; see the module notes).

    ``latest`` names the partitions to count; a negative or missing committed offset means
    "nothing committed yet". A topic whose partitions are all caught up is present with 0.
    """
    lag: dict[str, int] = {}
    for (topic, partition), end in latest.items():
        start = max(earliest.get((topic, partition), 0), 0)
        offset = committed.get((topic, partition), -1)
        position = max(offset, start)
        lag[topic] = lag.get(topic, 0) + max(end - position, 0)
    return lag


class GroupOffsets:
    """The clients that read one group's committed offsets and its topics' end offsets.

    Committed offsets come from a consumer that carries the group id but never subscribes
    (so it never joins the group or moves its offsets), not from the admin API:
    ``AdminClient.list_consumer_group_offsets`` crashes the process (SIGSEGV in librdkafka's
    ``rd_kafka_handle_OffsetFetch``) when the broker answers NOT_COORDINATOR, which happens
    while a group's coordinator is being found or loaded (librdkafka #5040,
    confluent-kafka-python #1982; reproduced here with confluent-kafka 2.16.1). A sampler
    must never take its worker down, so it uses the consumer's ``committed()``, whose group
    machinery retries that error. End offsets come from the admin client's ListOffsets,
    which can ask for the last stable offset.
    """

    def __init__(self, settings: Settings, group: str) -> None:
        self.group = group
        self.admin = kafka.admin_client(settings)
        self.reader = kafka.offsets_reader(settings, group)

    def partitions(self, topics: Iterable[str]) -> list[Partition]:
        """Every partition of the topics; a missing topic is an error, named."""
        metadata = self.admin.list_topics(timeout=REQUEST_TIMEOUT).topics
        found: list[Partition] = []
        for topic in topics:
            if topic not in metadata or metadata[topic].error is not None:
                raise LookupError(f"topic {topic} does not exist")
            found.extend((topic, p) for p in sorted(metadata[topic].partitions))
        return found

    def offsets(self, partitions: list[Partition]) -> tuple[
            dict[Partition, int], dict[Partition, int], dict[Partition, int]]:
        """(committed, earliest, latest) offsets of the partitions, asked of the cluster."""
        committed: dict[Partition, int] = {}
        for tp in self._committed([TopicPartition(t, p) for t, p in partitions]):
            if tp.error is not None:
                raise KafkaException(tp.error)
            committed[(tp.topic, tp.partition)] = tp.offset
        ends: list[dict[Partition, int]] = []
        specs = (OffsetSpec.earliest(), OffsetSpec.latest())  # type: ignore[no-untyped-call]
        for spec in specs:
            futures = self.admin.list_offsets(
                {TopicPartition(t, p): spec for t, p in partitions},
                isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=REQUEST_TIMEOUT)
            ends.append({(tp.topic, tp.partition): future.result().offset
                         for tp, future in futures.items()})
        return committed, ends[0], ends[1]

    def _committed(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """``committed()``, retrying while the group's coordinator is found or loaded."""
        deadline = time.monotonic() + REQUEST_TIMEOUT
        while True:
            try:
                return list(self.reader.committed(partitions, timeout=REQUEST_TIMEOUT))
            except KafkaException as exc:
                if exc.args[0].code() not in COORDINATOR_MOVING or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def lag(self, topics: Iterable[str]) -> dict[str, int]:
        """The group's lag per topic, right now."""
        return topic_lag(*self.offsets(self.partitions(topics)))

    def close(self) -> None:
        self.reader.close()


class LagSampler(threading.Thread):
    """A daemon thread that sets the gauge for one group's topics every ``interval`` s.

    A failed sample (broker away, group coordinator moving) never reaches the worker: it is
    logged once per distinct message, counted as ``griddispatch_worker_errors_total{stage=
    "lag"}``, and the group's series are removed until the next good sample, so a dashboard
    shows a gap instead of a stale number.
    """

    def __init__(self, settings: Settings, group: str, topics: Iterable[str], worker: str,
                 interval: float = DEFAULT_INTERVAL) -> None:
        super().__init__(name=f"lag-{group}", daemon=True)
        self.settings, self.group, self.topics = settings, group, list(topics)
        self.worker, self.interval = worker, interval
        self.stopped = threading.Event()
        self._last_problem = ""

    def run(self) -> None:
        clients = GroupOffsets(self.settings, self.group)
        try:
            while True:
                self.sample(clients)
                if self.stopped.wait(self.interval):
                    return
        finally:
            clients.close()

    def sample(self, clients: GroupOffsets) -> None:
        try:
            lag = clients.lag(self.topics)
        except Exception as exc:  # any failure: skip this tick, keep the worker going
            metrics.WORKER_ERRORS.labels(worker=self.worker, stage="lag").inc()
            for topic in self.topics:
                with contextlib.suppress(KeyError):
                    metrics.CONSUMER_LAG.remove(self.group, topic)
            problem = f"{type(exc).__name__}: {exc}"
            if problem != self._last_problem:
                log.warning("consumer lag of group %s not measured: %s", self.group, problem)
                self._last_problem = problem
            return
        self._last_problem = ""
        for topic, value in lag.items():
            metrics.CONSUMER_LAG.labels(group=self.group, topic=topic).set(value)

    def stop(self) -> None:
        self.stopped.set()


def interval_from_env() -> float:
    """``GRIDDISPATCH_LAG_SECONDS`` (default 15): tests shorten it to see lag move quickly."""
    try:
        return max(float(os.environ.get("GRIDDISPATCH_LAG_SECONDS", DEFAULT_INTERVAL)), 0.5)
    except ValueError:
        return DEFAULT_INTERVAL


def start_sampler(settings: Settings, group: str, topics: Iterable[str],
                  worker: str) -> LagSampler:
    """Sample ``group``'s lag on ``topics`` (names without the topic prefix) from now on."""
    sampler = LagSampler(settings, settings.topic(group), [settings.topic(t) for t in topics],
                         worker, interval_from_env())
    sampler.start()
    return sampler
