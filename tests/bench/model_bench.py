"""Classification with the learned model in the path, against the cost of reading a report.

The issue's questions: does a report cost at most 4x parsing and validating it alone (JSON
decoding + the intake contract), and does a ten times larger set cost at most 1.5x as much?
Measured on the shipped rules (the real catalogue and examples, the trained model) in one
pinned process, with interleaved rounds so the machine's drift hits every pass alike:

- ``floor``: ``json.loads`` + the contract's validator over the raw reports;
- ``model-decided``: the evaluation set's texts (1,245 reports written like residents,
  12345 operators and grid workers write, 76 characters on average, long letters
  included), placed by grid code; almost all are decided by the model or sent to triage
  by it;
- ``..._batches``: the same through ``classify_many`` in batches of 64, as the classify
  worker runs (the model scores a batch's texts in one pass);
- ``rule-decided``: the same texts with an operators' keyword phrase (``rules/layers``)
  prepended, so an operators' rule decides and the model only judges urgency;
- ``10x``: the model-decided pass against a model whose vocabulary is padded to ten times
  its size with n-gram keys no text contains (the cost of scoring grows with the vocabulary
  only through the lookup; a model trained on ten times the examples, about 77,000, takes
  a quarter of an hour to train on this machine, so its scoring is measured this way and
  its training time is not).

Load times: the rule set loaded with the model from the cache, and with training (an empty
cache folder), at the shipped size.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from engine.classifier.model import MatterModel
from engine.classify import classify_many, classify_raw
from engine.contracts import Classified, IntakeReport
from engine.rules import RuleSet
from engine.rules.load import load_rules

REPO = Path(__file__).resolve().parents[2]
RECEIVED_AT = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
TARGET_COST_OVER_FLOOR = 4.0
TARGET_COST_RATIO = 1.5
BATCH_MAX = 64  # engine.runtime.workers.classify.BATCH_MAX
_validate = IntakeReport.__pydantic_validator__.validate_python


def reports(ruleset: RuleSet) -> tuple[list[bytes], list[bytes]]:
    """(model-decided, rule-decided) raw reports, from the evaluation set's texts."""
    grid = sorted(ruleset.jurisdiction.grids)[7]
    texts = [json.loads(line)["text"]
             for path in sorted((REPO / "rules" / "eval").glob("*.jsonl"))
             for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    words = sorted({w for layer in ruleset.layers for rule in layer.file.classify
                    if not rule.patterns and not rule.channels and not rule.exclude
                    for w in rule.keywords})

    def raw(i: int, text: str) -> bytes:
        return json.dumps({"channel": "hotline", "channel_id": f"B-{i}",
                           "reported_at": "2026-11-24T10:00:00+08:00", "description": text,
                           "grid_code": grid}, ensure_ascii=False).encode("utf-8")

    model = [raw(i, t) for i, t in enumerate(texts)]
    rule = [raw(i, f"{words[i % len(words)]}，{t}") for i, t in enumerate(texts)]
    return model, rule


def _floor(raws: list[bytes]) -> None:
    for raw in raws:
        _validate(json.loads(raw))


def _classify(ruleset: RuleSet, raws: list[bytes]) -> None:
    for raw in raws:
        classify_raw(ruleset, raw, RECEIVED_AT)


def _classify_batches(ruleset: RuleSet, raws: list[bytes]) -> None:
    """As the classify worker does: batches of ``BATCH_MAX`` through ``classify_many``."""
    for start in range(0, len(raws), BATCH_MAX):
        classify_many(ruleset, [(raw, RECEIVED_AT) for raw in raws[start:start + BATCH_MAX]])


def _timed(run: Any, raws: list[bytes]) -> float:
    gc.collect()
    start = time.perf_counter()
    run(raws)
    return (time.perf_counter() - start) / len(raws)


def padded(model: MatterModel, factor: int, seed: int = 11) -> MatterModel:
    """The model with its vocabulary padded to ``factor`` times the n-grams (random keys of
    unused code points, zero weights): same decisions, a bigger lookup."""
    rng = np.random.default_rng(seed)
    extra = (factor - 1) * len(model.features)
    # Private-use code points (U+E000..U+F8FF): no report text contains them.
    points = rng.integers(0xE000, 0xF8FF, size=(extra, 3))
    features = model.features + tuple("".join(map(chr, p)) for p in points)
    weights = np.vstack([model.weights, np.zeros((extra, len(model.classes)), np.float32)])
    return replace(model, identity=model.identity + f"x{factor}",
                   features=features,
                   idf=np.concatenate([model.idf, np.ones(extra, np.float32)]),
                   weights=weights,
                   urgent_weights=np.concatenate([model.urgent_weights,
                                                  np.zeros(extra, np.float32)]))


def load_times() -> dict[str, float]:
    """Seconds to load the shipped rules: model from the cache, and trained afresh."""
    start = time.perf_counter()
    load_rules(REPO / "rules")
    cached = time.perf_counter() - start
    from engine.classifier import train

    train._memo.clear()
    with tempfile.TemporaryDirectory() as empty:
        old = os.environ.get("GRIDDISPATCH_MODEL_CACHE")
        os.environ["GRIDDISPATCH_MODEL_CACHE"] = empty
        try:
            start = time.perf_counter()
            load_rules(REPO / "rules")
            trained = time.perf_counter() - start
        finally:
            if old is None:
                os.environ.pop("GRIDDISPATCH_MODEL_CACHE")
            else:
                os.environ["GRIDDISPATCH_MODEL_CACHE"] = old
    return {"load_with_cached_model_s": round(cached, 2),
            "load_with_training_s": round(trained, 2)}


def run(rounds: int, log: Any = print, train: bool = True) -> dict[str, Any]:
    ruleset = load_rules(REPO / "rules")
    assert ruleset.model is not None, "the shipped rules have examples: a model is expected"
    tenfold = RuleSet(ruleset.root, ruleset.revision, ruleset.matters, ruleset.jurisdiction,
                      ruleset.departments, ruleset.channels, ruleset.layers,
                      ruleset.holidays, ruleset.examples, ruleset.classifier,
                      padded(ruleset.model, 10))
    model_raws, rule_raws = reports(ruleset)
    paths: dict[str, int] = {}
    for raw in model_raws + rule_raws:
        outcome = classify_raw(ruleset, raw, RECEIVED_AT)
        by = outcome.classified_by if isinstance(outcome, Classified) else (
            type(outcome).__name__.lower())
        paths[by] = paths.get(by, 0) + 1
    same = sum(_decision(classify_raw(ruleset, r, RECEIVED_AT))
               == _decision(classify_raw(tenfold, r, RECEIVED_AT)) for r in model_raws)
    passes: dict[str, Callable[[], float]] = {
        "floor": lambda: _timed(_floor, model_raws),
        "model_decided": lambda: _timed(lambda rs: _classify(ruleset, rs), model_raws),
        "rule_decided": lambda: _timed(lambda rs: _classify(ruleset, rs), rule_raws),
        "model_decided_10x": lambda: _timed(lambda rs: _classify(tenfold, rs), model_raws),
        "model_decided_batches": lambda: _timed(lambda rs: _classify_batches(ruleset, rs),
                                                model_raws),
        "rule_decided_batches": lambda: _timed(lambda rs: _classify_batches(ruleset, rs),
                                               rule_raws),
        "model_decided_batches_10x": lambda: _timed(
            lambda rs: _classify_batches(tenfold, rs), model_raws),
    }
    for timed in passes.values():  # warm-up, untimed
        timed()
    seconds: dict[str, list[float]] = {name: [] for name in passes}
    for _ in range(rounds):
        for name, timed in passes.items():
            seconds[name].append(timed())
    log("per report (µs): " + ", ".join(
        f"{name} {statistics.median(v) * 1e6:.1f}" for name, v in seconds.items()))

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(seconds[a], seconds[b], strict=True))

    result: dict[str, Any] = {
        "reports": len(model_raws), "rounds": rounds,
        "decided_by": paths, "tenfold_decisions_equal": f"{same}/{len(model_raws)}",
        "per_report_us": {k: round(statistics.median(v) * 1e6, 1) for k, v in seconds.items()},
        "reports_per_s": {k: round(1 / statistics.median(v)) for k, v in seconds.items()},
        "cost_over_floor": {name: round(ratio(name, "floor"), 2) for name in (
            "model_decided", "rule_decided", "model_decided_batches", "rule_decided_batches")},
        "cost_ratio_10x_over_1x": round(ratio("model_decided_10x", "model_decided"), 3),
        "cost_ratio_10x_over_1x_batches": round(ratio("model_decided_batches_10x",
                                                      "model_decided_batches"), 3),
        "targets": {"cost_over_floor": TARGET_COST_OVER_FLOOR,
                    "cost_ratio_10x_over_1x": TARGET_COST_RATIO},
        "model": {"classes": len(ruleset.model.classes),
                  "vocabulary": len(ruleset.model.features),
                  "weights_mb": round(ruleset.model.weights.nbytes / 2**20, 1),
                  "examples": len(ruleset.examples.examples)},
    }
    if train:
        result["load"] = load_times()
    return result


def _decision(outcome: Any) -> tuple[Any, ...]:
    return (type(outcome).__name__, getattr(outcome, "matter_code", None),
            getattr(outcome, "priority", None))
