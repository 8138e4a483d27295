"""The benchmarks' plumbing: a private broker, topics under a fresh prefix, worker
processes, their /metrics and CPU seconds, producing a burst and reading topics back."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupState,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_client.parser import text_string_to_metric_families

from engine.cli.stack import kafka_broker, process
from engine.runtime import kafka
from engine.runtime.settings import Settings
from engine.runtime.topic_admin import apply, pending_changes

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "rules"
Log = Callable[[str], None]
READY_TIMEOUT = 90.0
PASSTHROUGH_TOPIC = "bench.passthrough"


@contextlib.contextmanager
def broker(workdir: Path, log: Log) -> Iterator[tuple[str, int | None]]:
    """(bootstrap, broker pid or None): a private broker on free ports, stopped after."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"], None
        return
    layout = kafka_broker.layout(workdir / "kafka")
    port, controller = process.free_port(), process.free_port()
    started = time.monotonic()
    pid = kafka_broker.start(layout, port, controller)
    log(f"broker on 127.0.0.1:{port} (pid {pid}) up in {time.monotonic() - started:.1f}s")
    try:
        yield f"127.0.0.1:{port}", pid
    finally:
        process.stop(layout.pid_file)


def topics_dir(workdir: Path, partitions: int) -> Path:
    """The repo's topic specs with every plain topic at ``partitions`` partitions, plus the
    passthrough's output topic; department templates keep the spec's count (one per
    department topic, whatever the number of workers)."""
    spec = yaml.safe_load((REPO / "topics" / "topics.yaml").read_text("utf-8"))
    for topic in spec["topics"]:
        topic["partitions"] = partitions
    spec["topics"].append({"name": PASSTHROUGH_TOPIC, "partitions": partitions,
                           "replication_factor": 1, "retention": "1d",
                           "key": "as consumed", "value": "as consumed"})
    folder = workdir / f"topics-{partitions}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "topics.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True), "utf-8")
    return folder


def prepare(bootstrap: str, workdir: Path, partitions: int, phase: str,
            only: Sequence[str] = ()) -> Settings:
    """A fresh topic prefix with its topics created (all, or ``only`` these); the settings
    that point at it."""
    settings = Settings(kafka_bootstrap=bootstrap,
                        topic_prefix=f"bench{uuid.uuid4().hex[:8]}-{phase}.",
                        rules_dir=RULES, topics_dir=topics_dir(workdir, partitions))
    admin = kafka.admin_client(settings)
    desired, changes = pending_changes(settings, admin)
    if only:
        names = {settings.topic(t) for t in only}
        desired = [t for t in desired if t.name in names]
        changes = [c for c in changes if c.topic in names]
    apply(admin, changes)
    wait_until(lambda: topics_served(admin, [t.name for t in desired]), READY_TIMEOUT,
               f"the {len(desired)} new topics to have leaders")
    return settings


def topics_served(admin: AdminClient, names: list[str]) -> bool:
    """Every partition of the topics answers an offset request on its leader.

    Creating topics returns before the broker has become leader of every new partition;
    a worker started in that gap gets NOT_LEADER_FOR_PARTITION (the route worker exits on
    it), so the phases start only once every partition answers.
    """
    meta = admin.list_topics(timeout=10).topics
    if any(name not in meta or meta[name].error is not None for name in names):
        return False
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    futures = admin.list_offsets({TopicPartition(name, p): latest for name in names
                                  for p in meta[name].partitions}, request_timeout=10)
    try:
        for future in futures.values():
            future.result()
    except KafkaException:
        return False
    return True


@dataclass
class Proc:
    kind: str
    popen: subprocess.Popen[bytes]
    log: Path
    metrics_port: int | None = None


class Processes:
    """Worker subprocesses, each in its own session; all are stopped by ``stop_all``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []

    def start(self, kind: str, argv: Sequence[str], metrics_port: int | None = None) -> Proc:
        log = self.workdir / f"{kind}-{len(self.procs)}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(list(argv), cwd=REPO, stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        proc = Proc(kind, popen, log, metrics_port)
        self.procs.append(proc)
        return proc

    def worker(self, settings: Settings, kind: str, *extra: str) -> Proc:
        port = process.free_port()
        return self.start(kind, [sys.executable, "-m", "engine", "--bootstrap",
                                 settings.kafka_bootstrap, "--topic-prefix",
                                 settings.topic_prefix, "worker", kind, "--rules-dir",
                                 str(RULES), "--metrics-port", str(port), *extra], port)

    def passthrough(self, settings: Settings, partition: int) -> Proc:
        return self.start("passthrough", [sys.executable, "-m", "tests.bench.dispatch_bench",
                                          "passthrough", settings.kafka_bootstrap,
                                          settings.topic_prefix, str(partition)])

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.kind} (pid {proc.popen.pid}) exited "
                                   f"{proc.popen.returncode}; log {proc.log}:\n"
                                   + process.tail(proc.log, 30))

    def stop_all(self, timeout: float = 20.0) -> None:
        """SIGTERM to each process group we started, SIGKILL to what is left after timeout."""
        for proc in self.procs:
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait()
        self.procs.clear()


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(port: int, names: set[str]) -> float | None:
    """Sum of the named samples on a worker's /metrics, None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples if s.name in names)


def route_counters(procs: Processes) -> dict[str, float]:
    """Transactions by outcome, store rebuilds by reason and errors, summed over the route
    workers: an aborted transaction makes a worker re-read the whole ``cases`` topic."""
    wanted = {"griddispatch_route_transactions_total", "griddispatch_route_rebuilds_total",
              "griddispatch_worker_errors_total", "griddispatch_route_batch_seconds_sum",
              "griddispatch_route_batch_seconds_count", "griddispatch_route_batch_records_sum"}
    out: dict[str, float] = {}
    for proc in procs.procs:
        if proc.kind != "route" or proc.metrics_port is None:
            continue
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{proc.metrics_port}/metrics",
                                        timeout=2) as answer:
                text = answer.read().decode()
        except OSError:
            continue
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in wanted:
                    labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                    name = f"{sample.name.removeprefix('griddispatch_')}{{{labels}}}"
                    out[name] = out.get(name, 0.0) + sample.value
    return out


def wait_until(test: Callable[[], bool], timeout: float, what: str,
               procs: Processes | None = None, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        if procs is not None:
            procs.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def group_ready(admin: AdminClient, group: str, members: int) -> bool:
    """The group is Stable with ``members`` members (so no rebalance is still to come)."""
    try:
        description = admin.describe_consumer_groups([group], request_timeout=5)[group].result()
    except KafkaException:
        return False
    return bool(description.state == ConsumerGroupState.STABLE
                and len(description.members) == members)


def produce_burst(settings: Settings, records: Sequence[tuple[bytes | None, bytes]],
                  topic: str) -> float:
    """Produce every record as fast as the client takes them; seconds until all acked."""
    producer = kafka.producer(settings, **{"linger.ms": 20, "batch.size": 1_000_000})
    started = time.monotonic()
    name = settings.topic(topic)
    for key, value in records:
        while True:
            try:
                producer.produce(name, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(60) != 0:
        raise RuntimeError(f"could not produce every record to {name}")
    return time.monotonic() - started


@dataclass
class Read:
    """Records of some topics read back: Kafka timestamps (ms) and, when asked, contents."""

    timestamps: list[int] = field(default_factory=list)
    records: list[tuple[str, int, bytes | None, bytes | None]] = field(default_factory=list)
    per_partition: dict[str, int] = field(default_factory=dict)


def end_offsets(consumer: Consumer, topics: list[str]) -> dict[tuple[str, int], int]:
    meta = consumer.list_topics(timeout=30).topics
    out = {}
    for topic in topics:
        for p in meta[topic].partitions:
            out[(topic, p)] = consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                             timeout=30, cached=False)[1]
    return out


def read_back(settings: Settings, topics: list[str], keep: bool = False,
              timeout: float = 120.0) -> Read:
    """Every committed record of the topics (prefix added), read_committed, to their end."""
    names = [settings.topic(t) for t in topics]
    consumer = kafka.consumer(settings, f"bench-read-{uuid.uuid4().hex[:8]}",
                              **{"enable.partition.eof": True})
    out = Read()
    try:
        ends = end_offsets(consumer, names)
        pending = {tp for tp, end in ends.items() if end > 0}
        if not pending:
            return out
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in pending])
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {sorted(pending)} to the end")
            for m in consumer.consume(5000, 0.5):
                if m.error() is not None:
                    continue
                out.timestamps.append(m.timestamp()[1])
                where = f"{str(m.topic()).removeprefix(settings.topic_prefix)}[{m.partition()}]"
                out.per_partition[where] = out.per_partition.get(where, 0) + 1
                if keep:
                    out.records.append((str(m.topic()), m.timestamp()[1], m.key(), m.value()))
            positions = consumer.position([TopicPartition(t, p) for t, p in pending])
            pending = {(tp.topic, tp.partition) for tp in positions
                       if tp.offset < ends[(tp.topic, tp.partition)]}
    finally:
        consumer.close()
    return out


def cpu_by_kind(procs: Processes, broker_pid: int | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for proc in procs.procs:
        out[proc.kind] = out.get(proc.kind, 0.0) + cpu_seconds(proc.popen.pid)
    if broker_pid is not None:
        out["broker"] = cpu_seconds(broker_pid)
    out["bench"] = cpu_seconds(os.getpid())
    return out


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def metric_sum(procs: Processes, kind: str, name: str) -> float:
    """One metric summed over the workers of one kind (0 for a worker that does not answer)."""
    return sum(scrape(p.metrics_port, {name}) or 0.0
               for p in procs.procs if p.kind == kind and p.metrics_port is not None)


def routed_count(procs: Processes) -> float:
    return metric_sum(procs, "route", "griddispatch_route_records_total")


def open_case_count(procs: Processes) -> float:
    return metric_sum(procs, "route", "griddispatch_open_cases")


def classified_count(procs: Processes) -> float:
    return metric_sum(procs, "classify", "griddispatch_classify_records_total")


def cpu_text(cpu: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())


def stop_on_signal() -> threading.Event:
    """Set on SIGTERM or SIGINT: a bench process finishes its batch and exits cleanly."""
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stopping.set())
    return stopping
