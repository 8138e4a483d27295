"""``python -m tests.bench`` (``make bench``): run every benchmark, write bench-results/.

Performance figures come only from here, never from timed unit tests: a benchmark controls
what a test run cannot (one pinned core, warm-up, several rounds, a baseline measured in
the same process), and quotes medians and ratios rather than one noisy number.
Results go to ``bench-results/classify.json`` (machine-readable, with the machine it ran
on) and a table on stdout.

``--only classify|dispatch`` runs one of the two; by default both run, classify first. The
dispatch benchmark (``dispatch_bench``: end-to-end through a private broker, against a
passthrough measured in the same run) is not pinned: it runs a broker and several worker
processes that need every core, so the classify run's pinning is undone before it starts.
It writes ``bench-results/dispatch.json``.

``--only intake`` drives the HTTP intake for a minute at the rate it holds
(``intake_load``) and writes ``bench-results/intake.json``; it runs last by default.

``--only timers`` runs the SLA timer benchmark (``timers_bench``: memory of 1,000,000
pending timers, fire lateness at 1,000 fires/s through a real timer worker, and a rebuild of
1,000,000 open cases from ``cases``; its own broker and Redis). It writes
``bench-results/timers.json``. It also runs last when no ``--only`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.bench import (
    dispatch_bench,
    dispatch_report,
    intake_load,
    linger_curve,
    model_bench,
    timers_bench,
    timers_rebuild,
)
from tests.bench.classify_bench import (
    TARGET_COST_RATIO,
    TARGET_EVENTS_PER_S,
    ScaleResult,
    paired_ratio,
    run_scales,
)

REPO = Path(__file__).resolve().parents[2]


def _pin_one_core() -> tuple[int, int | None]:
    """Pin this process to one CPU so 'per core' means one core; returns (nproc, cpu)."""
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1]
    os.sched_setaffinity(0, {cpu})
    return len(allowed), cpu


def _machine(nproc: int, cpu: int | None) -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    return {"nproc": nproc, "pinned_cpu": cpu, "cpu_model": model,
            "python": sys.version.split()[0], "implementation": platform.python_implementation(),
            "platform": platform.platform(), "commit": commit,
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            # Other processes share the machine's cores; the load average says how much.
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


def _table(results: list[ScaleResult], ratio: float | None) -> str:
    head = (f"{'scale':>5} {'grids':>8} {'items':>6} {'rules':>6} {'load s':>7} "
            f"{'engine ev/s':>12} {'rounds min-max':>15} {'us/ev':>7} {'place/s':>9} "
            f"{'naive ev/s':>11} {'speedup':>8}")
    rows = [head, "-" * len(head)]
    for r in results:
        rows.append(f"{str(r.scale) + 'x':>5} {r.counts['grids']:>8,} {r.counts['items']:>6,} "
                    f"{r.counts['rules']:>6,} {r.load_s:>7.1f} {r.median_events_per_s:>12,.0f} "
                    f"{min(r.rounds_events_per_s):>7,.0f}-{max(r.rounds_events_per_s):<7,.0f} "
                    f"{1e6 / r.median_events_per_s:>7.1f} {r.median_place_per_s:>9,.0f} "
                    f"{r.naive_events_per_s:>11,.1f} {r.speedup:>7,.0f}x")
    best = max(r.median_events_per_s for r in results)
    rows.append("")
    rows.append(f"engine: median of rounds over {results[0].events:,} reports, one pinned core; "
                f"naive: first {results[0].naive_events} reports, decisions checked equal; "
                "place/s: engine grid lookup alone")
    rows.append(f"target >= {TARGET_EVENTS_PER_S:,} events/s/core: "
                f"{'MET' if best >= TARGET_EVENTS_PER_S else 'NOT MET'} "
                f"(best median {best:,.0f})")
    if ratio is not None:
        rows.append(f"cost per event 10x / 1x = {ratio:.2f}, median of interleaved rounds' "
                    f"ratios (target <= {TARGET_COST_RATIO}): "
                    f"{'MET' if ratio <= TARGET_COST_RATIO else 'NOT MET'}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["classify", "model", "dispatch", "timers", "intake",
                                           "linger"],
                        help="run only this benchmark (default: all)")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--events", type=int, default=20_000, help="reports per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--naive-events", type=int, default=0,
                        help="reports for the naive baseline (default: 300)")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "classify.json")
    parser.add_argument("--dispatch-reports", type=int, default=dispatch_bench.REPORTS,
                        help="reports per drain in the dispatch benchmark")
    parser.add_argument("--dispatch-partitions", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dispatch-rounds", type=int, default=dispatch_bench.ROUNDS,
                        help="drains per N and kind (the median is quoted)")
    parser.add_argument("--latency-seconds", type=float, default=dispatch_bench.LATENCY_SECONDS,
                        help="how long reports are offered in the latency run (0: none)")
    parser.add_argument("--latency-warmup", type=float, default=dispatch_bench.WARMUP_SECONDS,
                        help="seconds offered at each rate before its measured window "
                             "(reported, not judged; 0: none)")
    parser.add_argument("--latency-rates", type=int, nargs="*",
                        default=[dispatch_report.OFFERED_RATE, 100],
                        help="offered reports/s of the latency runs (the first is the issue's)")
    parser.add_argument("--no-warmup-drain", action="store_true",
                        help="skip the unmeasured drains that warm a new broker's JIT up")
    parser.add_argument("--no-stages", action="store_true",
                        help="skip the classify-only and route-only drains")
    parser.add_argument("--dispatch-out", type=Path,
                        default=REPO / "bench-results" / "dispatch.json")
    parser.add_argument("--timers-parts", nargs="+", default=list(timers_bench.PARTS),
                        choices=timers_bench.PARTS, help="parts of the timer benchmark")
    parser.add_argument("--timer-cases", type=int, default=timers_bench.TIMER_CASES,
                        help="cases of 5 pending timers in the memory part")
    parser.add_argument("--lateness-rounds", type=int, default=timers_bench.FIRE_ROUNDS)
    parser.add_argument("--rebuild-cases", type=int, default=timers_rebuild.REBUILD_CASES)
    parser.add_argument("--rebuild-record", choices=["dispatched", "accepted"],
                        default="dispatched",
                        help="the case record varied for the rebuild: just dispatched (both "
                             "clocks, 10 timers) or accepted (5 timers)")
    parser.add_argument("--model-rounds", type=int, default=7,
                        help="interleaved rounds of the model benchmark")
    parser.add_argument("--model-no-training", action="store_true",
                        help="skip timing a training of the model (about a minute)")
    parser.add_argument("--model-out", type=Path, default=REPO / "bench-results" / "model.json")
    parser.add_argument("--timers-out", type=Path,
                        default=REPO / "bench-results" / "timers.json")
    parser.add_argument("--lingers", type=int, nargs="+", default=list(linger_curve.LINGERS_MS),
                        help="route --linger-ms values for --only linger")
    parser.add_argument("--linger-rounds", type=int, default=1)
    parser.add_argument("--linger-rate", type=int, default=linger_curve.RATE,
                        help="offered reports/s of --only linger's latency windows")
    parser.add_argument("--linger-out", type=Path,
                        default=REPO / "bench-results" / "linger.json")
    parser.add_argument("--intake-seconds", type=float, default=intake_load.SECONDS,
                        help="how long the intake load runs")
    parser.add_argument("--intake-concurrency", type=int, default=intake_load.CONCURRENCY,
                        help="clients of the intake load, each sending when answered")
    args = parser.parse_args(argv)

    if args.only in (None, "classify"):
        allowed = os.sched_getaffinity(0)
        try:
            run_classify(args)
        finally:
            os.sched_setaffinity(0, allowed)  # the dispatch run needs every core
    if args.only in (None, "model"):
        allowed = os.sched_getaffinity(0)
        try:
            run_model(args)
        finally:
            os.sched_setaffinity(0, allowed)
    if args.only in (None, "dispatch"):
        run_dispatch(args)
    if args.only in (None, "timers"):
        run_timers(args)
    if args.only in (None, "intake"):
        run_intake(args)
    if args.only == "linger":  # a curve of the route worker's setting, not a target
        run_linger(args)
    return 0


def run_linger(args: argparse.Namespace) -> None:
    _run_and_write("route linger", lambda: linger_curve.run(
        args.lingers, args.linger_rounds, rate=args.linger_rate,
        log=lambda m: print(m, flush=True)),
        linger_curve.table, args.linger_out)


def run_intake(args: argparse.Namespace) -> None:
    _run_and_write("intake", lambda: intake_load.run(
        args.intake_seconds, args.intake_concurrency, log=lambda m: print(m, flush=True)),
        intake_load.table, REPO / "bench-results" / "intake.json")


def _run_and_write(name: str, run: Callable[[], dict[str, Any]],
                   table: Callable[[dict[str, Any]], str], path: Path) -> None:
    """A benchmark on every core, written with the machine, its duration and the load."""
    nproc = len(os.sched_getaffinity(0))
    started = time.monotonic()
    result = run()
    out = {"benchmark": name, "machine": _machine(nproc, None), **result,
           "seconds_total": round(time.monotonic() - started, 1),
           "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]}
    _write(path, out, table(result))


def _write(path: Path, result: dict[str, Any], table: str) -> None:
    """The machine-readable result to ``path``, the table to stdout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", "utf-8")
    print()
    print(table)
    seconds = result.get("seconds_total")
    print(f"\nwritten to {path}" + (f" ({seconds:.0f}s)" if seconds else ""))


def run_model(args: argparse.Namespace) -> None:
    nproc, cpu = _pin_one_core()
    machine = _machine(nproc, cpu)
    print(f"\nmachine: nproc={nproc}, pinned to cpu {cpu}, {machine['cpu_model']}", flush=True)
    started = time.monotonic()
    result = model_bench.run(args.model_rounds, log=lambda m: print(m, flush=True),
                             train=not args.model_no_training)
    out = {"benchmark": "model", "machine": machine,
           "method": {"statistic": "median of interleaved rounds; ratios = median of the "
                                   "rounds' own ratios",
                      "floor": "json.loads + the intake contract's validator",
                      "measured": "engine.classify.classify_raw on bytes (decoding, "
                                  "validation, placing by grid code, keyword rules, the "
                                  "model, urgency, the output record)",
                      "pinned_cores": 1},
           **result, "seconds_total": round(time.monotonic() - started, 1),
           "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]}
    per = result["per_report_us"]
    lines = [f"{'pass':<20}{'µs/report':>12}{'reports/s':>12}"]
    lines += [f"{name:<20}{per[name]:>12.1f}{result['reports_per_s'][name]:>12,}"
              for name in per]
    lines.append("cost over the floor: " + ", ".join(
        f"{name} {value}x" for name, value in result["cost_over_floor"].items())
        + f" (target <= {model_bench.TARGET_COST_OVER_FLOOR}x)")
    lines.append(f"10x vocabulary / 1x: one by one {result['cost_ratio_10x_over_1x']}, "
                 f"batches {result['cost_ratio_10x_over_1x_batches']} "
                 f"(target <= {model_bench.TARGET_COST_RATIO})")
    if "load" in result:
        lines.append(f"load: {result['load']}")
    _write(args.model_out, out, "\n".join(lines))


def run_dispatch(args: argparse.Namespace) -> None:
    nproc = len(os.sched_getaffinity(0))
    machine = _machine(nproc, None)
    print(f"\nmachine: nproc={nproc} (not pinned), {machine['cpu_model']}, "
          f"Python {machine['python']}", flush=True)
    started = time.monotonic()
    report = dispatch_bench.run(args.dispatch_partitions, args.dispatch_reports,
                                args.dispatch_rounds, args.latency_rates,
                                args.latency_seconds, not args.no_stages,
                                log=lambda m: print(m, flush=True),
                                warmup_seconds=args.latency_warmup,
                                warmup_drain=not args.no_warmup_drain)
    out = {"benchmark": "dispatch", "machine": machine,
           "method": {"reports_per_drain": args.dispatch_reports,
                      "rounds": args.dispatch_rounds, "statistic": "median of rounds",
                      "throughput": "drain of reports produced in one burst once every "
                                    "consumer group is Stable; first to last output record "
                                    "by Kafka timestamp; engine output = committed records "
                                    "on the cases topic (one per lead assignment)",
                      "passthrough": "confluent-kafka consume -> produce unchanged -> flush "
                                     "-> commit, same group, N processes",
                      "latency": "lead assignment vs intake record; 'visible' = wall time a "
                                 "read_committed reader got it minus wall time of produce(); "
                                 "'kafka_timestamps' = CreateTime difference",
                      "offered_rates": args.latency_rates,
                      "offered_seconds": args.latency_seconds,
                      "warmup_seconds_before_each_window": args.latency_warmup},
           "targets": {"ratio_engine_over_passthrough": dispatch_report.TARGET_RATIO,
                       "latency_p99_ms": dispatch_report.TARGET_P99_MS},
           **report.as_json(),
           "seconds_total": round(time.monotonic() - started, 1),
           "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]}
    _write(args.dispatch_out, out, dispatch_report.table(report))


def run_timers(args: argparse.Namespace) -> None:
    nproc = len(os.sched_getaffinity(0))
    machine = _machine(nproc, None)
    print(f"\nmachine: nproc={nproc} (not pinned), {machine['cpu_model']}, "
          f"Python {machine['python']}", flush=True)
    started = time.monotonic()
    report = timers_bench.run(args.timers_parts, args.timer_cases, args.lateness_rounds,
                              args.rebuild_cases, args.rebuild_record,
                              log=lambda m: print(m, flush=True))
    out = {"benchmark": "timers", "machine": machine,
           "method": {"memory": "used_memory after - before (MEMORY PURGE first) over the "
                                "timers scheduled; baseline: raw ZADD of the same members",
                      "lateness": "a real 'worker timers' process; fired_at - due from the "
                                  "escalations records read back; median of rounds",
                      "rebuild": "engine.runtime.timer_restore.rebuild() into empty keys; "
                                 "baseline: "
                                 "kafka.read_to_end of the same topic with a no-op",
                      "rebuild_record": args.rebuild_record},
           **report.as_json(),
           "seconds_total": round(time.monotonic() - started, 1),
           "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]}
    _write(args.timers_out, out, timers_bench.table(report))


def run_classify(args: argparse.Namespace) -> None:
    nproc, cpu = _pin_one_core()
    machine = _machine(nproc, cpu)
    print(f"machine: nproc={nproc}, pinned to cpu {cpu}, {machine['cpu_model']}, "
          f"Python {machine['python']}", flush=True)
    results = run_scales(args.scales, args.events, args.rounds, args.naive_events or 300,
                         log=lambda m: print(m, flush=True))
    by_scale = {r.scale: r for r in results}
    ratio = None
    if 1 in by_scale and 10 in by_scale:
        ratio = paired_ratio(by_scale[1], by_scale[10])
    report = {
        "benchmark": "classify", "machine": machine,
        "method": {"events_per_round": args.events, "rounds": args.rounds,
                   "statistic": "median of rounds; scales timed in interleaved rounds; "
                                "10x/1x = median of the rounds' own ratios",
                   "warmup": "2,000 reports, untimed, before every timed pass",
                   "pinned_cores": 1, "measured": "engine.classify.classify_data on a dict "
                   "(validation, placing by coordinates, scope, keywords, priority, output "
                   "record); no Kafka, no JSON decoding of bytes"},
        "targets": {"events_per_s_per_core": TARGET_EVENTS_PER_S,
                    "cost_ratio_10x_over_1x": TARGET_COST_RATIO},
        "scales": [r.as_json() for r in results],
        "cost_ratio_10x_over_1x": round(ratio, 3) if ratio is not None else None,
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    _write(args.out, report, _table(results, ratio))


if __name__ == "__main__":
    raise SystemExit(main())
