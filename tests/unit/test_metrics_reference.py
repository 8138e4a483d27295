"""The README's metrics table is the code's: regenerate it with
``python -m engine.runtime.metrics``."""

from __future__ import annotations

from pathlib import Path

from engine.runtime.metrics import all_metrics, reference_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_metrics_table_matches_the_code() -> None:
    text = README.read_text(encoding="utf-8")
    table = text.split("<!-- metrics-table -->\n", 1)[1].split("\n<!-- /metrics-table -->")[0]
    assert table == reference_table(), "run: python -m engine.runtime.metrics --update README.md"


def test_metric_names_follow_prometheus_conventions() -> None:
    for metric in all_metrics():
        name = metric._name
        assert name.startswith("griddispatch_")
        assert not name.endswith("_total"), "prometheus_client adds _total to counters"
        assert "_ms" not in name and "milliseconds" not in name
