"""Consumer lag from offsets: the pure part of engine.lag (the broker part is in integration)."""

from __future__ import annotations

import pytest

from engine.lag import interval_from_env, topic_lag


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
