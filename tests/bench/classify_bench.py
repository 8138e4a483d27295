"""Classification throughput at province scale, against a naive baseline in the same run.

The issue's question: does the rules stage classify >= 50,000 reports per second on one
core (placing by coordinates included, Kafka excluded), and does a ten times larger rule
set cost at most 1.5 times as much per report? Absolute figures depend on the machine, so
each scale is also measured against ``naive.NaiveClassifier`` on the same data in the same
process, and the two must agree on every report of the naive sample before any figure is
reported: a speed-up over a baseline that decides differently would mean nothing.

For each scale: generate the files (seeded), ``load_rules`` them (load time is reported
on its own: it includes compiling and checking every county's effective scope, a cost paid
once per reload, not per report). Then every scale is timed with ``classify_data`` over a
fixed list of reports in interleaved rounds (1x, 10x, 1x, ...), so the machine's drift hits
both alike, each pass after an untimed warm-up on its own scale (the other scale's pass has
just evicted its indexes from the caches); the figure is the median of rounds, and 10x/1x
the median of the rounds' own ratios. The process is pinned to one CPU.
"""

from __future__ import annotations

import gc
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.classify import classify_data
from engine.contracts import Classified, Outcome, Triage
from engine.rules import RuleSet
from engine.rules.load import load_rules
from tests.bench.generate import generate, make_events
from tests.bench.naive import Decision, NaiveClassifier

RECEIVED_AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
TARGET_EVENTS_PER_S = 50_000
TARGET_COST_RATIO = 1.5
WARMUP_EVENTS = 2_000


@dataclass
class ScaleResult:
    scale: int
    counts: dict[str, int]
    generate_s: float
    load_s: float
    events: int
    rounds_events_per_s: list[float]
    place_rounds_per_s: list[float]
    naive_events: int
    naive_events_per_s: float
    naive_place_per_s: float
    agreement_checked: int
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def median_events_per_s(self) -> float:
        return statistics.median(self.rounds_events_per_s)

    @property
    def median_place_per_s(self) -> float:
        return statistics.median(self.place_rounds_per_s)

    @property
    def speedup(self) -> float:
        return self.median_events_per_s / self.naive_events_per_s

    def as_json(self) -> dict[str, Any]:
        return {
            "scale": self.scale, "counts": self.counts,
            "generate_seconds": round(self.generate_s, 2), "load_seconds": round(self.load_s, 2),
            "engine": {"events": self.events,
                       "rounds_events_per_s": [round(x) for x in self.rounds_events_per_s],
                       "median_events_per_s": round(self.median_events_per_s),
                       "median_us_per_event": round(1e6 / self.median_events_per_s, 2),
                       "place_only_median_per_s": round(self.median_place_per_s),
                       "outcomes": self.outcomes},
            "naive": {"events": self.naive_events,
                      "events_per_s": round(self.naive_events_per_s, 1),
                      "place_only_per_s": round(self.naive_place_per_s, 1)},
            "speedup_engine_over_naive": round(self.speedup, 1),
            "agreement": {"checked": self.agreement_checked, "equal": self.agreement_checked,
                          "compared": ["kind", "matter_code", "grid_code", "priority"]},
        }


def engine_decision(outcome: Outcome) -> Decision:
    """The engine's record reduced to what the naive classifier decides."""
    if isinstance(outcome, Classified):
        return Decision("classified", outcome.matter_code, outcome.grid_code, outcome.priority)
    if isinstance(outcome, Triage):
        return Decision(f"triage:{outcome.reason}", outcome.matter_code, outcome.grid_code, None)
    return Decision(f"rejected:{outcome.reason}", None, None, None)


def _time_engine(ruleset: RuleSet, events: list[dict[str, Any]], rounds: int) -> list[float]:
    """Events per second for each round (the caller warms up first)."""
    out = []
    for _ in range(rounds):
        gc.collect()
        start = time.perf_counter()
        for event in events:
            classify_data(ruleset, event, RECEIVED_AT)
        out.append(len(events) / (time.perf_counter() - start))
    return out


def _time_place(ruleset: RuleSet, events: list[dict[str, Any]], rounds: int) -> list[float]:
    """Placing alone (the spatial index lookup), to show where scale costs, if anywhere."""
    where = ruleset.jurisdiction
    points = [(e["location"]["lon"], e["location"]["lat"],
               datetime.fromisoformat(e["reported_at"])) for e in events]
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        for lon, lat, when in points:
            where.grid_at(lon, lat, when)
        out.append(len(points) / (time.perf_counter() - start))
    return out


@dataclass
class PreparedScale:
    """A scale generated, loaded and cross-checked against the naive baseline: ready to time."""

    scale: int
    ruleset: RuleSet
    reports: list[dict[str, Any]]
    counts: dict[str, int]
    generate_s: float
    load_s: float
    naive_events: int
    naive_events_per_s: float
    naive_place_per_s: float
    outcomes: dict[str, int]


def prepare_scale(scale: int, events: int, naive_events: int,
                  log: Callable[[str], None] = print) -> PreparedScale:
    """Generate, load and cross-check one scale; the files are deleted once loaded."""
    root = Path(tempfile.mkdtemp(prefix=f"griddispatch-bench-{scale}x-"))
    try:
        start = time.perf_counter()
        gen = generate(root, scale)
        generate_s = time.perf_counter() - start
        log(f"[{scale}x] generated {gen.counts} in {generate_s:.1f}s")
        start = time.perf_counter()
        ruleset = load_rules(root)
        load_s = time.perf_counter() - start
        log(f"[{scale}x] load_rules in {load_s:.1f}s")
        reports = make_events(gen, events)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    naive = NaiveClassifier(ruleset)
    sample = reports[:naive_events]
    expected = [engine_decision(classify_data(ruleset, e, RECEIVED_AT)) for e in sample]
    start = time.perf_counter()
    got = [naive.classify(e) for e in sample]
    naive_eps = len(sample) / (time.perf_counter() - start)
    mismatches = [(i, x, y) for i, (x, y) in enumerate(zip(expected, got, strict=True))
                  if x != y]
    if mismatches:
        raise AssertionError(f"naive baseline disagrees with the engine on "
                             f"{len(mismatches)}/{len(sample)} reports, first: "
                             f"{mismatches[:3]}")
    start = time.perf_counter()
    for e in sample:
        naive.place(e["location"]["lon"], e["location"]["lat"],
                    datetime.fromisoformat(e["reported_at"]).date())
    naive_place = len(sample) / (time.perf_counter() - start)
    log(f"[{scale}x] naive: {naive_eps:.1f} events/s on {len(sample)} reports, "
        "decisions equal to the engine's")

    outcomes: dict[str, int] = {}
    for e in reports:
        kind = engine_decision(classify_data(ruleset, e, RECEIVED_AT)).kind
        outcomes[kind] = outcomes.get(kind, 0) + 1
    return PreparedScale(scale, ruleset, reports, gen.counts, generate_s, load_s, len(sample),
                         naive_eps, naive_place, outcomes)


def run_scales(scales: list[int], events: int, rounds: int, naive_events: int,
               log: Callable[[str], None] = print) -> list[ScaleResult]:
    """Every scale loaded first, then timed in interleaved rounds (1x, 10x, 1x, 10x, ...).

    On a shared machine the speed drifts by 15 % within a minute; timing all rounds of one
    scale and then all of the next would put that drift into the 10x/1x ratio. Interleaved,
    both scales see the same drift, and the ratio is taken per round (``paired_ratio``).
    """
    prepared = [prepare_scale(scale, events, naive_events, log) for scale in scales]
    timed: dict[int, list[float]] = {p.scale: [] for p in prepared}
    for _ in range(rounds):
        for p in prepared:
            # Untimed warm-up right before each timed pass: the other scale's pass has just
            # evicted this one's indexes from the CPU caches, a cost a worker serving one
            # rule set never pays.
            for event in p.reports[:WARMUP_EVENTS]:
                classify_data(p.ruleset, event, RECEIVED_AT)
            timed[p.scale].extend(_time_engine(p.ruleset, p.reports, 1))
    results = []
    for p in prepared:
        log(f"[{p.scale}x] engine rounds (events/s): {[round(x) for x in timed[p.scale]]}")
        place_eps = _time_place(p.ruleset, p.reports, rounds)
        results.append(ScaleResult(p.scale, p.counts, p.generate_s, p.load_s, len(p.reports),
                                   timed[p.scale], place_eps, p.naive_events,
                                   p.naive_events_per_s, p.naive_place_per_s, p.naive_events,
                                   p.outcomes))
    return results


def paired_ratio(small: ScaleResult, large: ScaleResult) -> float:
    """Cost per report of ``large`` over ``small``: the median of the rounds' own ratios."""
    return statistics.median(a / b for a, b in zip(small.rounds_events_per_s,
                                                   large.rounds_events_per_s, strict=True))
