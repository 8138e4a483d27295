"""The one-screen live summary of ``make run``, read from the workers' own ``/metrics``.

It shows what an on-call person would look at first (what came in, what became of it, who
is late), and reads nothing but the Prometheus exposition, so it also proves every worker's
``/metrics`` answers.
"""

from __future__ import annotations

import urllib.request
from collections import defaultdict
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(url: str, timeout: float = 2.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return str(answer.read().decode())
    except OSError:
        return None


def parse(texts: Mapping[str, str | None]) -> Samples:
    """Samples of every exposition, summed over processes, by name and label set."""
    out: Samples = defaultdict(lambda: defaultdict(float))
    for text in texts.values():
        for family in text_string_to_metric_families(text or ""):
            for s in family.samples:
                out[s.name][tuple(sorted(s.labels.items()))] += s.value
    return out


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for labels, value in samples.get(name, {}).items():
        totals[dict(labels).get(label, "")] += value
    return dict(totals)


def _line(title: str, counts: Mapping[str, float], order: tuple[str, ...] = ()) -> str:
    keys = [k for k in order if k in counts] + sorted(k for k in counts if k not in order)
    parts = "  ".join(f"{k} {counts[k]:.0f}" for k in keys if counts[k]) or "-"
    return f"{title:<14}{parts}"


def render(samples: Samples, up: Mapping[str, bool], sent: Mapping[str, int],
           answered: Mapping[str, int], elapsed_s: float) -> str:
    workers = "  ".join(f"{name} {'up' if ok else 'DOWN'}" for name, ok in up.items())
    lines = [
        f"griddispatch demo — {elapsed_s:.0f}s   workers: {workers}",
        _line("sent", dict(sent), ("hotline", "gridapp", "open311", "sensor", "api")),
        _line("intake", by_label(samples, "griddispatch_intake_requests_total", "result"),
              ("accepted", "duplicate", "invalid")),
        _line("classify", by_label(samples, "griddispatch_classify_records_total", "outcome"),
              ("classified", "triage", "rejected")),
        _line("triage", by_label(samples, "griddispatch_triage_total", "reason")),
        _line("route", by_label(samples, "griddispatch_route_records_total", "outcome"),
              ("assigned", "merged", "duplicate", "updated", "rerouted", "rejected")),
        _line("departments", dict(answered),
              ("accepted", "returned", "resolved", "verified")),
        _line("open cases", by_label(samples, "griddispatch_open_cases", "state"),
              ("dispatched", "accepted", "resolved", "reopened")),
        _line("escalations", by_label(samples, "griddispatch_escalations_total", "step"),
              ("warning", "breach", "level1", "level2")),
        _line("platforms", by_label(samples, "griddispatch_assignments_total", "platform"),
              ("governance", "market", "enforcement", "services")),
    ]
    return "\n".join(lines)
