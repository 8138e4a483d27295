"""The route worker's transaction bound (``--linger-ms``) against throughput and latency.

Issue 18, item 2: a transaction's per-partition costs (a produce request, a KIP-890
verification and a commit marker for every department partition it touches) are shared by
more records when a batch waits a little for more, at the price of that wait in every
record's latency. For each linger, on one private broker, with 1 partition and one classify
and one route worker: the 20,000-report drain (throughput, and the route worker's and the
broker's CPU per report) and a window at ``rate`` reports/s after a warm-up window at the
same rate (p50 and p99 visible to a read_committed reader). 300/s by default: a rate both
stages hold on this machine, so the figure is the linger's cost rather than a queue growing
behind classify (at 1,000/s on a slow hour the classify hop alone reached seconds). Lingers
are run in interleaved rounds so the machine's drift hits all alike; medians of the rounds.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.rules.load import load_rules
from tests.bench.dispatch_bench import REPORTS, WARMUP_SECONDS, run_engine
from tests.bench.dispatch_report import SEED
from tests.bench.harness import RULES, Log, broker
from tests.bench.latency import LatencyPlan
from tests.bench.reports import expected_outcomes, make_reports

LINGERS_MS = (0, 20, 100)
RATE, SECONDS = 300, 15.0


def run(lingers_ms: Sequence[int] = LINGERS_MS, rounds: int = 2, count: int = REPORTS,
        rate: int = RATE, seconds: float = SECONDS,
        warmup: float = WARMUP_SECONDS, log: Log = print) -> dict[str, Any]:
    ruleset = load_rules(RULES)
    reports = expected_outcomes(ruleset, make_reports(count, SEED, "D"))
    rows: dict[int, list[dict[str, float]]] = {linger: [] for linger in lingers_ms}
    workdir = Path(tempfile.mkdtemp(prefix="griddispatch-linger-bench-"))
    try:
        with broker(workdir, log) as (bootstrap, broker_pid):
            # A drain nobody measures first: the broker's JVM is still compiling, and the
            # first drain on a new broker used up to twice the broker CPU of the later ones
            # (which linger ran first decided the curve's shape before this).
            run_engine(bootstrap, broker_pid, workdir, 1, reports, [], log)
            for round_ in range(rounds):
                # every other round in reverse, so that no linger always runs first
                for linger in lingers_ms if round_ % 2 == 0 else lingers_ms[::-1]:
                    tag = f"{linger}-{round_}"
                    plans = [LatencyPlan(rate, warmup, expected_outcomes(ruleset, make_reports(
                        int(rate * warmup), SEED - linger - 31 * round_, f"W{tag}")), True),
                             LatencyPlan(rate, seconds, expected_outcomes(ruleset, make_reports(
                                 int(rate * seconds), SEED + linger + 31 * round_, f"L{tag}")))]
                    run_ = run_engine(bootstrap, broker_pid, workdir, 1, reports, plans, log,
                                      ("--linger-ms", str(linger)))
                    measured = [lat for lat in run_.latency if not lat.warmup]
                    visible = measured[0].summary(measured[0].visible_ms) if measured else {}
                    batches = measured[0].route_batches if measured else {}
                    drain = run_.drain
                    row = {"drain_per_s": drain.per_s,
                           "route_cpu_ms_per_report": 1000 * drain.cpu_seconds.get(
                               "route", 0.0) / max(drain.records, 1),
                           "broker_cpu_ms_per_report": 1000 * drain.cpu_seconds.get(
                               "broker", 0.0) / max(drain.records, 1),
                           "p50_ms": visible.get("p50_ms", float("nan")),
                           "p99_ms": visible.get("p99_ms", float("nan")),
                           "records_per_batch": batches.get("records_per_batch", float("nan"))}
                    rows[linger].append(row)
                    log(f"linger {linger} ms, round {round_ + 1}: " + ", ".join(
                        f"{k} {v:,.2f}" for k, v in row.items()))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    medians = {linger: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
               for linger, runs in rows.items() if runs}
    return {"lingers_ms": list(lingers_ms), "rounds": rounds, "offered_rate": rate,
            "seconds": seconds, "runs": {str(k): v for k, v in rows.items()},
            "medians": {str(k): v for k, v in medians.items()}}


def table(result: dict[str, Any]) -> str:
    rate = result["offered_rate"]
    lines = ["| linger | drain (reports/s) | route CPU / report | broker CPU / report | "
             f"p50 at {rate}/s | p99 at {rate}/s | records / transaction |",
             "|---|---|---|---|---|---|---|"]
    for linger, m in result["medians"].items():
        lines.append(f"| {linger} ms | {m['drain_per_s']:,.0f} | "
                     f"{m['route_cpu_ms_per_report']:.2f} ms | "
                     f"{m['broker_cpu_ms_per_report']:.2f} ms | {m['p50_ms']:.0f} ms | "
                     f"{m['p99_ms']:.0f} ms | {m['records_per_batch']:.1f} |")
    return "\n".join(lines)
