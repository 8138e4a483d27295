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
from contextlib import suppress
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from engine.classifier.features import batch_keys, gram_key, normalise

NONE = ""  # the class of reports that fit no catalogue item
Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]


def sparse_product(rows: Ints, values: Floats, indptr: Ints, dense: Floats) -> Floats:
    """(compressed sparse rows) @ dense, float32, by scipy's compiled kernel called directly.

    The kernel sums each text's terms in its own order whatever else is in the batch, so a
    report's scores do not depend on its batch. Built through ``csr_matrix``, the same call
    cost about 75 µs of checks and dispatch per batch, more than the arithmetic of a
    quiet hour's batch of one; that path stays as the fallback should scipy's private
    module ever change (``tests/unit/test_classifier.py`` holds the two equal).
    """
    out = np.zeros((len(indptr) - 1, dense.shape[1]), dtype=np.float32)
    try:
        _kernel()(len(indptr) - 1, dense.shape[0], dense.shape[1],
                  indptr.astype(np.int64, copy=False), rows.astype(np.int64, copy=False),
                  values, np.ascontiguousarray(dense).ravel(), out.ravel())
    except (TypeError, ValueError, ImportError):
        return sparse_product_checked(rows, values, indptr, dense)
    return out


def sparse_product_checked(rows: Ints, values: Floats, indptr: Ints, dense: Floats) -> Floats:
    """``sparse_product`` through scipy's public, checked path."""
    from scipy.sparse import csr_matrix

    matrix = csr_matrix((values, rows, indptr), shape=(len(indptr) - 1, dense.shape[0]))
    return np.asarray(matrix @ dense, dtype=np.float32)


@cache
def _kernel() -> Any:
    """scipy's kernel, imported when a model is made (a third of a second, paid at start or
    reload rather than by the first report) and not by every program importing this."""
    from scipy.sparse._sparsetools import csr_matvecs

    return csr_matvecs


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
    features: tuple[str, ...]  # row → n-gram (explanations)
    idf: Floats  # per row
    weights: Floats  # rows × classes
    bias: Floats  # per class
    urgent_weights: Floats  # per row
    urgent_bias: float
    calibration: Calibration
    column: dict[str, int] = field(init=False, repr=False, compare=False)
    # The vocabulary as sorted integer keys (``features.batch_keys``) and the row of each.
    keys: npt.NDArray[np.uint64] = field(init=False, repr=False, compare=False)
    key_rows: Ints = field(init=False, repr=False, compare=False)

    platform_names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    platform_masks: Floats = field(init=False, repr=False, compare=False)  # platform × class

    def __post_init__(self) -> None:
        with suppress(ImportError):
            _kernel()
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
        rows, values, _ = self.vectors([text])
        return rows, values

    def vectors(self, texts: list[str]) -> tuple[Ints, Floats, Ints]:
        """Every text's TF-IDF vector, as compressed rows: (rows, values, indptr), text i's
        entries at ``indptr[i]:indptr[i + 1]``. Distinct n-grams are counted first, so each
        is looked up once, in sorted order (which walks the sorted vocabulary in order)."""
        count = len(texts)
        keys, docs = batch_keys([normalise(t) for t in texts])
        order = np.lexsort((keys, docs))
        keys, docs = keys[order], docs[order]
        first = np.ones(len(keys), dtype=bool)
        if len(keys) > 1:
            first[1:] = (keys[1:] != keys[:-1]) | (docs[1:] != docs[:-1])
        starts = np.flatnonzero(first)
        counts = np.diff(np.append(starts, len(keys)))
        keys, docs = keys[starts], docs[starts]
        vocabulary = self.keys
        at = np.minimum(np.searchsorted(vocabulary, keys), max(len(vocabulary) - 1, 0))
        known = vocabulary[at] == keys if len(vocabulary) else np.zeros(len(keys), bool)
        rows, docs, counts = self.key_rows[at[known]], docs[known], counts[known]
        values = (np.log(counts).astype(np.float32) + np.float32(1.0)) * self.idf[rows]
        norms = np.sqrt(np.bincount(docs, weights=values * values, minlength=count))
        values = (values / np.where(norms > 0, norms, 1.0)[docs]).astype(np.float32)
        return rows, values, np.searchsorted(docs, np.arange(count + 1))

    def score(self, text: str, top: int = 3) -> Scored:
        """One text's scores: a batch of one, so that a report gets the same figures to the
        last bit whether the worker scored it alone or with others (a replayed record must
        be byte-identical)."""
        return self.score_many([text], top)[0]

    def score_many(self, texts: list[str], top: int = 3) -> list[Scored]:
        """``score`` for many texts at once (the classify worker's batches): the same
        answers, but each numpy step runs once for the batch instead of once per text, and
        the n-grams that many reports share are read from memory once."""
        count = len(texts)
        if not count:
            return []
        rows, values, indptr = self.vectors(texts)
        raw = sparse_product(rows, values, indptr, self.weights) + self.bias
        urgent_raw = sparse_product(rows, values, indptr, self.urgent_weights[:, None])[:, 0] \
            .astype(np.float64) + self.urgent_bias
        calibration = self.calibration
        scaled = raw / np.float32(calibration.temperature)
        scaled -= scaled.max(axis=1, keepdims=True)
        probabilities = np.exp(scaled)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        urgency = 1.0 / (1.0 + np.exp(-(calibration.urgent_scale * urgent_raw
                                         + calibration.urgent_shift)))
        if count == 1:  # a quiet hour's batch: the one-row form has a third of the overhead
            return [self._scored(probabilities[0], float(urgency[0]), top)]
        return self._scored_rows(probabilities, urgency, top)

    def _scored_rows(self, probabilities: Floats, urgency: npt.NDArray[np.float64],
                     top: int) -> list[Scored]:
        """``_scored`` for every row of a batch, each step once for all rows."""
        # Summed with numpy, not a BLAS product, whose rounding depends on the batch's shape:
        # a report's figures must not depend on which reports shared its batch.
        masses = (probabilities[:, None, :] * self.platform_masks[None, :, :]).sum(axis=2)
        best = masses.argmax(axis=1)
        inside = probabilities * self.platform_masks[best]
        matters = inside.argmax(axis=1)
        keep = min(top + 1, probabilities.shape[1])
        candidates = np.argpartition(-probabilities, keep - 1, axis=1)[:, :keep]
        picked = np.take_along_axis(probabilities, candidates, axis=1)
        order = np.argsort(-picked, axis=1, kind="stable")
        candidates = np.take_along_axis(candidates, order, axis=1).tolist()
        picked = np.take_along_axis(picked, order, axis=1).tolist()
        classes, names = self.classes, self.platform_names
        out = []
        for i, (platform, mass, matter) in enumerate(zip(
                best.tolist(), masses.max(axis=1).tolist(), matters.tolist(), strict=True)):
            name = names[platform]
            suggestions = tuple(Suggestion(classes[c], p)
                                for c, p in zip(candidates[i], picked[i], strict=True)
                                if classes[c] != NONE)[:top]
            out.append(Scored(name, mass, classes[matter] if name != NONE else NONE,
                              suggestions, float(urgency[i]), probabilities[i]))
        return out

    def urgency(self, text: str) -> float:
        """The calibrated probability of danger to life (as ``score`` computes it)."""
        return self.score(text).urgency

    def _scored(self, probabilities: Floats, urgency: float, top: int) -> Scored:
        """``_scored_rows`` for one row, with the same figures: the same numpy reductions on
        the same data, without the batch's axis juggling. A report whose catalogue keywords
        are evidence comes here after its batch was scored (about one in seven), and the
        batch form's dozen small calls cost more than the batch's whole product did."""
        masses = (probabilities[None, :] * self.platform_masks).sum(axis=1)
        best = int(masses.argmax())
        matter = int((probabilities * self.platform_masks[best]).argmax())
        keep = min(top + 1, probabilities.shape[0])
        candidates = np.argpartition(-probabilities, keep - 1)[:keep]
        picked = probabilities[candidates]
        order = np.argsort(-picked, kind="stable")
        classes, name = self.classes, self.platform_names[best]
        suggestions = tuple(Suggestion(classes[c], p) for c, p in zip(
            candidates[order].tolist(), picked[order].tolist(), strict=True)
            if classes[c] != NONE)[:top]
        return Scored(name, float(masses[best]), classes[matter] if name != NONE else NONE,
                      suggestions, float(urgency), probabilities)

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
                       features,
                       data["idf"], data["weights"], data["bias"], data["urgent_weights"],
                       float(meta["urgent_bias"]), Calibration(**meta["calibration"]))
