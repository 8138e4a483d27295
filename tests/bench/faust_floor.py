"""The floor of the Faust path: the classify worker's own Faust app, doing nothing.

Issue 18, item 1: how fast can a Faust agent move records at all on this machine, with the
classify worker's settings (``faust_app``: raw serialisers, at-least-once, a 5 ms producer
linger) and its batching (``take_events`` of up to 64 within 5 ms)? Its agent forwards each
report from ``incidents.reported`` to ``incidents.classified`` unchanged. The classify stage's
drain rate over this one is what classifying costs on top of Faust.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.runtime import kafka
from engine.runtime.settings import Settings
from tests.bench.dispatch_report import Drain
from tests.bench.harness import (
    Log,
    Processes,
    cpu_by_kind,
    cpu_text,
    delta,
    end_offsets,
    group_ready,
    prepare,
    produce_burst,
    read_back,
    wait_until,
)

GROUP = "bench-faust-floor"
READY_TIMEOUT = 90.0
DRAIN_TIMEOUT = 600.0


def run_floor(bootstrap: str, broker_pid: int | None, workdir: Path,
              records: Sequence[tuple[bytes | None, bytes]], log: Log) -> Drain:
    """The do-nothing agent alone (N = 1) on the reports of the classify-only drain."""
    settings = prepare(bootstrap, workdir, 1, "faustfloor")
    procs = Processes(workdir)
    sink = settings.topic("incidents.classified")
    try:
        started = time.monotonic()
        procs.start("faust-floor", [sys.executable, "-m", "tests.bench.faust_floor", bootstrap,
                                    settings.topic_prefix])
        admin = kafka.admin_client(settings)
        wait_until(lambda: group_ready(admin, settings.topic(GROUP), 1), READY_TIMEOUT,
                   "the Faust floor's group", procs)
        ready = time.monotonic() - started
        cpu_before = cpu_by_kind(procs, broker_pid)
        produce_s = produce_burst(settings, records, "incidents.reported")
        probe = kafka.consumer(settings, f"{GROUP}-probe")
        try:
            wait_until(lambda: sum(end_offsets(probe, [sink]).values()) >= len(records),
                       DRAIN_TIMEOUT, "the Faust floor to forward every report", procs)
        finally:
            probe.close()
        cpu = delta(cpu_by_kind(procs, broker_pid), cpu_before)
    finally:
        procs.stop_all()
    read = read_back(settings, ["incidents.classified"])
    seconds = ((max(read.timestamps) - min(read.timestamps)) / 1000
               if read.timestamps else 0.0)
    drain = Drain("Faust floor", 1, len(read.timestamps), len(records), seconds, ready,
                  produce_s, cpu, read.per_partition)
    log(f"[Faust floor] {drain.records:,} records forwarded in {drain.seconds:.2f}s = "
        f"{drain.per_s:,.0f}/s; cpu {cpu_text(cpu)}")
    return drain


def floor_main(bootstrap: str, prefix: str) -> int:
    import faust

    from engine.runtime.workers.classify import BATCH_MAX, BATCH_WITHIN_SECONDS, faust_app

    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
    with tempfile.TemporaryDirectory(prefix="griddispatch-faust-floor-") as datadir:
        app = faust_app(settings, settings.topic(GROUP), Path(datadir))
        source = app.topic(settings.topic("incidents.reported"))
        sink = app.topic(settings.topic("incidents.classified"))

        async def forward(stream: Any) -> None:
            async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_SECONDS):
                for event in events:
                    await sink.send(key=event.key, value=event.value)

        app.agent(source, name="floor")(forward)
        worker = faust.Worker(app, loglevel="WARNING", redirect_stdouts=False)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3:
        raise SystemExit(floor_main(sys.argv[1], sys.argv[2]))
    raise SystemExit("usage: python -m tests.bench.faust_floor BOOTSTRAP PREFIX "
                     "(the benchmark: python -m tests.bench --only dispatch)")
