"""The dispatch benchmark's judgement of issue 18's targets: medians of rounds, ratios
against the transactional fan-out, warm-up windows never judged."""

from __future__ import annotations

from tests.bench.dispatch_report import OFFERED_RATE, DispatchReport, Drain, table
from tests.bench.latency import Latency
from tests.bench.reports import ReportSet


def drain(what: str, n: int, per_s: float) -> Drain:
    return Drain(what, n, 1001, 1001, 1000 / per_s, 1.0, 1.0, {"broker": 1.0})


def window(rate: int, p99_ms: float, warmup: bool = False) -> Latency:
    visible = [10.0] * 98 + [p99_ms] * 2  # the p99 of 100 values is the 99th
    return Latency(rate, 100, 1.0, 100, 100, visible, visible, {}, [], 0.0, {}, {}, warmup)


def report(fanout_latency: list[Latency]) -> DispatchReport:
    return DispatchReport(
        ReportSet([], 1001, {}),
        passthrough={1: [drain("passthrough", 1, 100_000)], 2: [drain("passthrough", 2, 1e5)]},
        engine={1: [drain("engine", 1, 700), drain("engine", 1, 800), drain("engine", 1, 900)],
                2: [drain("engine", 2, 800)]},
        classify_stage={1: [drain("classify", 1, 900)], 2: [drain("classify", 2, 900)]},
        latency=[window(OFFERED_RATE, 9_000, warmup=True), window(OFFERED_RATE, 300)],
        alone={}, broker="private",
        fanout={1: [drain("fan-out", 1, 2000), drain("fan-out", 1, 1000),
                    drain("fan-out", 1, 1600)]},
        fanout_latency=fanout_latency)


def test_ratios_are_of_medians_and_only_measured_windows_are_judged() -> None:
    judged = report([window(OFFERED_RATE, 5, warmup=True), window(OFFERED_RATE, 100)])
    assert round(judged.fanout_ratio(1) or 0, 3) == 0.5  # 800 / 1600
    assert judged.fanout_ratio(2) is None  # no fan-out run at N = 2: nothing to judge
    assert judged.p99_over_fanout() == 3.0  # 300 / 100, the warm-ups left out
    text = table(judged)
    assert "engine / fan-out = 0.50 (target >= 0.5): MET" in text
    assert "engine p99 / fan-out p99 at 1000/s = 3.00 (target <= 2.0): NOT MET" in text
    summary = judged.as_json()
    assert summary["partitions"]["1"]["fanout_target_met"] is True
    assert summary["p99_target_met"] is False
    assert report([]).p99_over_fanout() is None
