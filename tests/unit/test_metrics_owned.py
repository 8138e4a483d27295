"""Each kind of process exports only the metrics it owns (``engine.runtime.metrics.OWNED``)."""

from __future__ import annotations

import pytest

from engine.runtime import metrics


def names(process: str) -> set[str]:
    return {family.name for family in metrics.registry(process).collect()}


def test_every_metric_has_an_owner() -> None:
    owned = {id(m) for ms in metrics.OWNED.values() for m in ms}
    orphans = [m._name for m in metrics.all_metrics() if id(m) not in owned]
    assert orphans == []


@pytest.mark.parametrize("process", ["intake", "bridge", "webhooks", "console", "classify"])
def test_processes_without_a_calendar_or_rules_reload_do_not_export_them(process: str) -> None:
    exported = names(process)
    assert "griddispatch_calendar_covered_until_timestamp_seconds" not in exported
    if process != "classify":  # classify hot-reloads its rules
        assert "griddispatch_rules_reload_success" not in exported


def test_workers_that_count_working_time_export_the_calendar_and_reload_state() -> None:
    for process in ("route", "timers"):
        assert {"griddispatch_calendar_covered_until_timestamp_seconds",
                "griddispatch_rules_reload_success"} <= names(process)
    assert "griddispatch_department_info" in names("timers")


def test_the_exposition_holds_the_standard_process_metrics_once() -> None:
    text = metrics.exposition("intake").decode()
    assert text.count("# TYPE process_resident_memory_bytes gauge") == 1
    assert "# TYPE griddispatch_intake_requests_total counter" in text
    assert "griddispatch_route_records" not in text
