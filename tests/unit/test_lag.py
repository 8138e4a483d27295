"""Consumer lag from offsets: the pure part of engine.runtime.lag (the broker part is in
integration)."""

from __future__ import annotations

import pytest

from engine.runtime.lag import interval_from_env, topic_lag


def test_lag_sums_end_minus_committed_over_partitions() -> None:
    latest = {("a", 0): 10, ("a", 1): 7, ("b", 0): 3}
    committed = {("a", 0): 4, ("a", 1): 7, ("b", 0): 3}
    assert topic_lag(committed, {}, latest) == {"a": 6, "b": 0}


def test_nothing_committed_counts_from_the_log_start() -> None:
    latest = {("a", 0): 10, ("a", 1): 5}
    earliest = {("a", 0): 2, ("a", 1): 0}
    assert topic_lag({("a", 0): -1001}, earliest, latest) == {"a": 8 + 5}


def test_a_committed_offset_deleted_by_retention_counts_from_the_log_start() -> None:
    assert topic_lag({("a", 0): 3}, {("a", 0): 50}, {("a", 0): 60}) == {"a": 10}


def test_lag_is_never_negative() -> None:
    # a committed offset past the last stable offset: an open transaction holds the LSO back
    assert topic_lag({("a", 0): 12}, {("a", 0): 0}, {("a", 0): 10}) == {"a": 0}


@pytest.mark.parametrize(("value", "expected"), [(None, 15.0), ("2", 2.0), ("0", 0.5),
                                                 ("soon", 15.0)])
def test_sampling_interval_comes_from_the_environment(
        monkeypatch: pytest.MonkeyPatch, value: str | None, expected: float) -> None:
    if value is None:
        monkeypatch.delenv("GRIDDISPATCH_LAG_SECONDS", raising=False)
    else:
        monkeypatch.setenv("GRIDDISPATCH_LAG_SECONDS", value)
    assert interval_from_env() == expected


def test_the_timers_worker_commits_under_the_group_its_lag_sampler_watches(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With a topic prefix the group must be prefixed once (kafka.consumer adds it): it was
    prefixed twice, so the sampler watched a group nobody committed to."""
    from engine.runtime import kafka
    from engine.runtime.settings import Settings
    from engine.runtime.workers import timers

    seen: dict[str, str] = {}

    class Recorder:
        def __init__(self, config: dict[str, object]) -> None:
            seen["group"] = str(config["group.id"])

    monkeypatch.setattr(kafka, "Consumer", Recorder)
    monkeypatch.setattr(kafka, "producer", lambda settings: None)
    settings = Settings().with_(topic_prefix="t1.")
    timers.TimerWorker(settings, None, None)  # type: ignore[arg-type]
    assert seen["group"] == settings.topic(timers.GROUP) == "t1." + timers.GROUP
