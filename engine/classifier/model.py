"""The learned classifier at run time: a linear model over TF-IDF character n-grams.

Training (``train.py``, scikit-learn) produces plain arrays; scoring here needs only numpy
and a dict, because the library's per-call overhead (building a sparse matrix for one
report) would cost more than the arithmetic. ``tests/unit/test_classifier.py`` checks that
the vectors and scores below equal scikit-learn's for the same model.

Two heads share the features: the matter head (one score per catalogue item, plus ``none``
for reports that fit no item) and the urgency head (danger to life, judged from the text
whatever the matter). Confidences are calibrated by cross-validation at training time: a
softmax temperature for the matter head, a logistic fit for the urgency head; the
thresholds that decide dispatch and urgency are chosen on the same out-of-fold scores.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from engine.classifier.features import gram_key, gram_keys, normalise

NONE = ""  # the class of reports that fit no catalogue item
Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]


class Suggestion(NamedTuple):
    matter: str  # item code
    confidence: float


class Scored(NamedTuple):
    """What the model makes of one text: calibrated confidences.

    The decision is taken at the platform first: the platform whose items together are most
    probable (or ``none``: fits no item), then the best item of that platform. Measured by
    cross-validation, gating dispatch on the platform's summed confidence dispatched about
    8 points more reports at the same platform precision than gating on the item's own.
    """

    platform: str  # the most probable platform, or NONE (the report fits no item)
    platform_confidence: float  # the summed probability of its items (or of none)
    matter: str  # the best item of that platform ("" when the platform is NONE)
    suggestions: tuple[Suggestion, ...]  # the best items overall, best first, none left out
    urgency: float  # calibrated probability of danger to life
    probabilities: Floats  # per class, in ``classes`` order (for the keyword evidence)


@dataclass(frozen=True)
class Calibration:
    """Chosen on out-of-fold scores at training time; see ``train.calibrate``."""

    temperature: float  # softmax(scores / temperature) is the matter confidence
    dispatch_threshold: float  # an item's confidence at or above it dispatches by itself
    urgent_scale: float  # sigmoid(urgent_scale * score + urgent_shift) is P(danger to life)
    urgent_shift: float
    urgent_threshold: float  # P(danger to life) at or above it marks the report urgent
    cv: dict[str, float] = field(default_factory=dict)  # the out-of-fold figures behind them


@dataclass(frozen=True)
class MatterModel:
    """Arrays and vocabulary of a trained model; immutable, shared by every scope."""

    identity: str  # content hash of what it was trained from (cache key, explanations)
    classes: tuple[str, ...]  # item codes and NONE, in the order of the weight columns
    platforms: tuple[str, ...]  # each class's platform (NONE for NONE)
    vocabulary: dict[str, int]  # n-gram → row
    features: tuple[str, ...]  # row → n-gram (explanations)
    idf: Floats  # per row
    weights: Floats  # rows × classes
    bias: Floats  # per class
    urgent_weights: Floats  # per row
    urgent_bias: float
    calibration: Calibration
    column: dict[str, int] = field(init=False, repr=False, compare=False)
    # The vocabulary as sorted integer keys (``features.gram_keys``) and the row of each.
    keys: npt.NDArray[np.uint64] = field(init=False, repr=False, compare=False)
    key_rows: Ints = field(init=False, repr=False, compare=False)

    platform_names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    platform_masks: Floats = field(init=False, repr=False, compare=False)  # platform × class

    def __post_init__(self) -> None:
        object.__setattr__(self, "column", {c: i for i, c in enumerate(self.classes)})
        names = tuple(sorted(set(self.platforms)))
        masks = np.asarray([[p == name for p in self.platforms] for name in names],
                           dtype=np.float32)
        object.__setattr__(self, "platform_names", names)
        object.__setattr__(self, "platform_masks", masks)
        keys = np.fromiter((gram_key(f) for f in self.features), dtype=np.uint64,
                           count=len(self.features))
        order = np.argsort(keys, kind="stable")
        object.__setattr__(self, "keys", keys[order])
        object.__setattr__(self, "key_rows", order.astype(np.int64))

    def vector(self, text: str) -> tuple[Ints, Floats]:
        """The report's TF-IDF vector as (rows, values): sublinear tf, l2-normalised, as
        scikit-learn's TfidfVectorizer computes it for the n-grams of its vocabulary."""
        grams = gram_keys(normalise(text))
        vocabulary = self.keys
        if not len(grams) or not len(vocabulary):
            return _NO_ROWS, _NO_VALUES
        # Distinct n-grams first: fewer to look up, and sorted queries walk the sorted
        # vocabulary in order (measured 44 → 30 µs a report against unique-after-lookup).
        grams, counts = np.unique(grams, return_counts=True)
        at = np.minimum(np.searchsorted(vocabulary, grams), len(vocabulary) - 1)
        known = vocabulary[at] == grams
        if not known.any():
            return _NO_ROWS, _NO_VALUES
        rows = self.key_rows[at[known]]
        values = (np.log(counts[known]).astype(np.float32) + np.float32(1.0)) * self.idf[rows]
        values /= np.float32(math.sqrt(float(values @ values)))
        return rows, values

    def score(self, text: str, top: int = 3) -> Scored:
        rows, values = self.vector(text)
        raw = values @ self.weights[rows] + self.bias if len(rows) else self.bias.copy()
        calibration = self.calibration
        scaled = raw / np.float32(calibration.temperature)
        scaled -= scaled.max()
        probabilities = np.exp(scaled)
        probabilities /= probabilities.sum()
        urgent_raw = float(values @ self.urgent_weights[rows]) + self.urgent_bias
        urgency = _sigmoid(calibration.urgent_scale * urgent_raw + calibration.urgent_shift)
        return self._scored(probabilities, urgency, top)

    def urgency(self, text: str) -> float:
        """The calibrated probability of danger to life alone (no matter scores)."""
        rows, values = self.vector(text)
        raw = float(values @ self.urgent_weights[rows]) + self.urgent_bias
        return _sigmoid(self.calibration.urgent_scale * raw + self.calibration.urgent_shift)

    def _scored(self, probabilities: Floats, urgency: float, top: int) -> Scored:
        masses = self.platform_masks @ probabilities
        best = int(np.argmax(masses))
        platform = self.platform_names[best]
        inside = probabilities * self.platform_masks[best]
        matter = self.classes[int(np.argmax(inside))] if platform != NONE else NONE
        order = np.argpartition(-probabilities, min(top, len(probabilities) - 1))[:top + 1]
        order = order[np.argsort(-probabilities[order], kind="stable")]
        classes = self.classes
        suggestions = tuple(Suggestion(classes[int(i)], float(probabilities[i]))
                            for i in order if classes[int(i)] != NONE)[:top]
        return Scored(platform, float(masses[best]), matter, suggestions, urgency,
                      probabilities)

    def with_evidence(self, scored: Scored, items: set[str], boost: float,
                      top: int = 3) -> Scored:
        """The scores after catalogue keywords found in the text: each named item's
        probability is multiplied by ``boost`` and all are renormalised. A keyword is
        evidence, not a verdict: a text that says 着火 about a blocked fire lane still
        goes where the rest of its words point when the model is sure enough."""
        columns = [self.column[code] for code in items if code in self.column]
        if not columns:
            return scored
        probabilities = scored.probabilities.copy()
        probabilities[columns] *= np.float32(boost)
        probabilities /= probabilities.sum()
        return self._scored(probabilities, scored.urgency, top)

    def reasons(self, text: str, matter: str, count: int = 6) -> list[tuple[str, float]]:
        """The n-grams that pushed the text towards ``matter`` most, with their share."""
        rows, values = self.vector(text)
        column = self.column.get(matter)
        if column is None or not len(rows):
            return []
        parts = values * self.weights[rows, column]
        order = np.argsort(-parts, kind="stable")[:count]
        return [(self.features[int(rows[i])], float(parts[i])) for i in order if parts[i] > 0]

    # --- storage --------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write atomically (a temporary file renamed), so a reader never sees half a model."""
        meta = {"identity": self.identity, "classes": list(self.classes),
                "platforms": list(self.platforms),
                "features": list(self.features), "urgent_bias": self.urgent_bias,
                "calibration": {**self.calibration.__dict__}}
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{id(self)}.partial")
        with partial.open("wb") as out:
            np.savez(out, meta=np.frombuffer(json.dumps(meta, ensure_ascii=False)
                                             .encode("utf-8"), dtype=np.uint8),
                     idf=self.idf, weights=self.weights, bias=self.bias,
                     urgent_weights=self.urgent_weights)
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> MatterModel:
        with np.load(path) as data:
            meta: dict[str, Any] = json.loads(bytes(data["meta"]).decode("utf-8"))
            features = tuple(meta["features"])
            return cls(meta["identity"], tuple(meta["classes"]), tuple(meta["platforms"]),
                       {f: i for i, f in enumerate(features)}, features,
                       data["idf"], data["weights"], data["bias"], data["urgent_weights"],
                       float(meta["urgent_bias"]), Calibration(**meta["calibration"]))


_NO_ROWS: Ints = np.empty(0, dtype=np.int64)
_NO_VALUES: Floats = np.empty(0, dtype=np.float32)


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)
