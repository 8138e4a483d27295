"""Training the classifier from the rule files: deterministic, cross-validated, cached.

The same rules folder gives the same model: the examples, the catalogue's names and
keywords, and ``rules/reference/classifier.yaml`` are all it reads; folds are shuffled with
a fixed seed and the solvers are seeded. So a model is named by a content hash of its
inputs (``identity``), kept in a cache folder under that name, and a reload with unchanged
inputs loads it instead of training again. Deleting the cache is always safe.

Why these choices (measured by cross-validation over the examples, see the README):
- TF-IDF over character 1- to 3-grams beat 1-4, 2-4, words from a segmenter (rjieba), and
  words plus characters;
- a linear SVM (liblinear, one-vs-rest) was as accurate as logistic regression and 30 to
  100 times faster to train; ComplementNB was faster still but 3-4 points less accurate;
- its scores are turned into calibrated confidences by a softmax temperature fitted on
  out-of-fold scores, and the dispatch threshold is the lowest confidence at which the
  out-of-fold decisions still reach the operators' platform precision.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt

from engine.classifier.features import ngrams, normalise
from engine.classifier.model import NONE, Calibration, MatterModel
from engine.classifier.settings import ClassifierSettings
from engine.contracts import Platform
from engine.reference.examples import ExampleCorpus
from engine.reference.matters import MatterCatalogue

# Part of every identity: bump when features, training or the stored form change. (Version 4
# is dense again: heads cut to each n-gram's 16 or 40 largest weights scored 2-3 times
# faster but cost 1.6-4 points of cross-validated item accuracy; see the README.)
TRAINING_VERSION = "4"
SEED = 0
Matrix = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TrainingSet:
    """Examples first (the only rows cross-validated), then the catalogue's own phrases."""

    texts: list[str]
    labels: list[str]  # item code or NONE
    urgent: list[bool]
    examples: int  # how many leading rows are examples
    styles: list[str]
    # Keywords of the layers' priority rules that mark a report urgent whatever its matter:
    # the urgency threshold is chosen for what rules and model find together.
    urgent_words: tuple[str, ...] = ()


def training_set(corpus: ExampleCorpus, catalogue: MatterCatalogue,
                 urgent_words: Sequence[str] = ()) -> TrainingSet:
    texts = [e.text for e in corpus.examples]
    labels = [e.matter or NONE for e in corpus.examples]
    urgent = [e.urgent for e in corpus.examples]
    styles: list[str] = [e.style for e in corpus.examples]
    for matter in catalogue.by_code.values():
        # The item's name and each keyword: what the catalogue's author meant by the item.
        for phrase in (matter.name, *matter.keywords):
            texts.append(phrase)
            labels.append(matter.code)
    return TrainingSet(texts, labels, urgent, len(corpus.examples), styles,
                       tuple(sorted(set(urgent_words))))


def identity(corpus: ExampleCorpus, catalogue: MatterCatalogue,
             settings: ClassifierSettings, urgent_words: Sequence[str] = ()) -> str:
    digest = hashlib.sha256()
    catalogue_part = [(m.code, m.name, m.platform, list(m.keywords), list(m.exclude))
                      for m in catalogue.by_code.values()]
    for part in (TRAINING_VERSION, corpus.digest, json.dumps(catalogue_part,
                                                            ensure_ascii=False),
                 settings.model_dump_json(), "\x1f".join(sorted(set(urgent_words)))):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def cache_folder() -> Path:
    """``GRIDDISPATCH_MODEL_CACHE``, else the user's cache folder (XDG)."""
    given = os.environ.get("GRIDDISPATCH_MODEL_CACHE")
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "griddispatch" / "models"


_memo: dict[str, MatterModel] = {}


def load_or_train(corpus: ExampleCorpus, catalogue: MatterCatalogue,
                  settings: ClassifierSettings,
                  urgent_words: Sequence[str] = ()) -> MatterModel | None:
    """The model for these inputs: from this process, the cache, or trained now.

    None when there are no examples to learn from (the keyword rules then decide alone).
    """
    if not corpus.examples:
        return None
    name = identity(corpus, catalogue, settings, urgent_words)
    model = _memo.get(name)
    if model is not None:
        return model
    path = cache_folder() / f"{name}.npz"
    try:
        model = MatterModel.load(path)
        with contextlib.suppress(OSError):
            path.touch()  # recently used: kept by _prune
    except (OSError, ValueError, KeyError):
        model = train(corpus, catalogue, settings, urgent_words, name)
        with contextlib.suppress(OSError):  # a read-only cache costs a training next time
            model.save(path)
            _prune(path.parent)
    if len(_memo) >= 4:
        _memo.pop(next(iter(_memo)))
    _memo[name] = model
    return model


CACHE_KEEP = 6  # models of about 85 MB: the last few revisions, for rollbacks and tests


def _prune(folder: Path) -> None:
    """Keep the most recently used models only."""
    models = sorted(folder.glob("*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in models[CACHE_KEEP:]:
        with contextlib.suppress(OSError):
            old.unlink()


# --- training ----------------------------------------------------------------------------


def train(corpus: ExampleCorpus, catalogue: MatterCatalogue, settings: ClassifierSettings,
          urgent_words: Sequence[str] = (), name: str | None = None) -> MatterModel:
    data = training_set(corpus, catalogue, urgent_words)
    platforms = platforms_of(catalogue)
    oof, (vectoriser, matter, urgent) = out_of_fold(data, settings, final=True)
    calibration = calibrate(data, oof, settings, platforms, keyword_items(catalogue))
    return assemble(name or identity(corpus, catalogue, settings, urgent_words), vectoriser,
                    matter, urgent, calibration, platforms)


def assemble(name: str, vectoriser: Any, matter: Any, urgent: Any, calibration: Calibration,
             platforms: dict[str, Platform | None]) -> MatterModel:
    """The run-time model from fitted scikit-learn objects: plain arrays only."""
    classes = tuple(str(c) for c in matter.classes_)
    features = tuple(sorted(vectoriser.vocabulary_, key=vectoriser.vocabulary_.__getitem__))
    return MatterModel(
        name, classes, tuple(platforms.get(c) or NONE for c in classes), features,
        vectoriser.idf_.astype(np.float32),
        np.ascontiguousarray(matter.coef_.T, dtype=np.float32),
        matter.intercept_.astype(np.float32),
        np.ascontiguousarray(urgent.coef_[0], dtype=np.float32),
        float(urgent.intercept_[0]), calibration)


def _vectoriser() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    # min_df=2: an n-gram seen in one text only is that text's, not the item's.
    return TfidfVectorizer(analyzer=_analyse, sublinear_tf=True, min_df=2, dtype=np.float32)


def _analyse(text: str) -> list[str]:
    return ngrams(normalise(text))


def _fit(texts: Sequence[str], labels: Sequence[str], urgent: Sequence[bool], examples: int,
         settings: ClassifierSettings) -> tuple[Any, Any, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    vectoriser = _vectoriser()
    matrix = vectoriser.fit_transform(texts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # liblinear's convergence notes: scores are used
        matter = LinearSVC(C=settings.regularisation, random_state=SEED).fit(matrix, labels)
        # Urgency is learned from the examples only: the catalogue's phrases say nothing
        # about whether someone is in danger now.
        urgent_model = LogisticRegression(C=settings.urgent_regularisation,
                                          class_weight="balanced", solver="liblinear",
                                          random_state=SEED).fit(matrix[:examples], urgent)
    return vectoriser, matter, urgent_model


@dataclass(frozen=True)
class OutOfFold:
    """Each example's scores from a model that did not see it."""

    classes: tuple[str, ...]
    scores: Matrix  # examples × classes
    urgent: npt.NDArray[np.float64]  # per example


@overload
def out_of_fold(data: TrainingSet, settings: ClassifierSettings,
                final: Literal[False] = False) -> OutOfFold: ...


@overload
def out_of_fold(data: TrainingSet, settings: ClassifierSettings,
                final: Literal[True]) -> tuple[OutOfFold, tuple[Any, Any, Any]]: ...


def out_of_fold(data: TrainingSet, settings: ClassifierSettings, final: bool = False
                ) -> OutOfFold | tuple[OutOfFold, tuple[Any, Any, Any]]:
    """Each example scored by a model trained without it (and, with ``final``, the model
    trained on everything). The fits run on two threads: liblinear releases the GIL."""
    from joblib import Parallel, delayed
    from sklearn.model_selection import StratifiedKFold

    n = data.examples
    classes = tuple(sorted(set(data.labels)))
    column = {c: i for i, c in enumerate(classes)}
    scores = np.full((n, len(classes)), -10.0)
    urgent = np.zeros(n)
    labels = np.asarray(data.labels[:n])
    folds = StratifiedKFold(settings.folds, shuffle=True, random_state=SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # items with fewer examples than folds
        splits = list(folds.split(np.zeros(n), labels))
    catalogue = list(range(n, len(data.texts)))

    def fit(train_rows: list[int]) -> tuple[Any, Any, Any]:
        rows = [*train_rows, *catalogue]
        return _fit([data.texts[i] for i in rows], [data.labels[i] for i in rows],
                    [data.urgent[i] for i in train_rows], len(train_rows), settings)

    jobs = [train_rows.tolist() for train_rows, _ in splits]
    if final:
        jobs.append(list(range(n)))
    fitted = Parallel(n_jobs=2, backend="threading")(delayed(fit)(rows) for rows in jobs)
    for (_, test_rows), (vectoriser, matter, urgent_model) in zip(splits, fitted,
                                                                  strict=False):
        matrix = vectoriser.transform([data.texts[i] for i in test_rows])
        got = matter.decision_function(matrix)
        for j, cls in enumerate(matter.classes_):
            scores[test_rows, column[str(cls)]] = got[:, j]
        urgent[test_rows] = urgent_model.decision_function(matrix)
    oof = OutOfFold(classes, scores, urgent)
    return (oof, fitted[-1]) if final else oof


def keyword_items(catalogue: MatterCatalogue) -> list[tuple[str, tuple[str, ...],
                                                             tuple[str, ...]]]:
    return [(m.code, tuple(m.keywords), tuple(m.exclude))
            for m in catalogue.by_code.values() if m.keywords]


def items_named(text: str, keywords: list[tuple[str, tuple[str, ...], tuple[str, ...]]]
                ) -> set[str]:
    """The items whose catalogue keywords a text contains (and no exclusion): the same
    evidence the rules stage gives the model through its keyword index."""
    return {code for code, words, exclude in keywords
            if any(w in text for w in words) and not any(w in text for w in exclude)}


def softmax(scores: Matrix, temperature: float) -> Matrix:
    scaled = scores / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    out = np.exp(scaled)
    out /= out.sum(axis=1, keepdims=True)
    return out


def boosted(probabilities: Matrix, texts: Sequence[str], classes: Sequence[str],
            keywords: list[tuple[str, tuple[str, ...], tuple[str, ...]]],
            boost: float) -> Matrix:
    column = {c: i for i, c in enumerate(classes)}
    out = probabilities.copy()
    for i, text in enumerate(texts):
        hits = [column[c] for c in items_named(text, keywords) if c in column]
        if hits:
            out[i, hits] *= boost
            out[i] /= out[i].sum()
    return out


def platform_decisions(probabilities: Matrix, classes: Sequence[str],
                       platforms: dict[str, Platform | None]
                       ) -> tuple[npt.NDArray[np.str_], Matrix, npt.NDArray[np.str_]]:
    """Per row: the platform (NONE: no item), its summed probability, its best item; the
    batch form of ``MatterModel._scored``."""
    of_class = np.asarray([platforms.get(c) or NONE for c in classes])
    names = sorted(set(of_class.tolist()))
    masks = np.asarray([of_class == name for name in names], dtype=np.float64)
    masses = probabilities @ masks.T
    best = masses.argmax(axis=1)
    platform = np.asarray(names)[best]
    items = (probabilities * masks[best]).argmax(axis=1)
    matter = np.where(platform == NONE, NONE, np.asarray(classes)[items])
    return platform, masses.max(axis=1), matter


def calibrate(data: TrainingSet, oof: OutOfFold, settings: ClassifierSettings,
              platforms: dict[str, Platform | None],
              keywords: list[tuple[str, tuple[str, ...], tuple[str, ...]]]) -> Calibration:
    """Temperature by out-of-fold log-loss; thresholds by the operators' targets."""
    n = data.examples
    labels = np.asarray(data.labels[:n])
    truth = np.asarray([oof.classes.index(label) for label in labels])
    temperature = min((_log_loss(softmax(oof.scores, t), truth), t)
                      for t in np.geomspace(0.02, 2.0, 60))[1]
    probabilities = boosted(softmax(oof.scores, temperature), data.texts[:n], oof.classes,
                            keywords, settings.keyword_boost)
    platform, confidence, matter = platform_decisions(probabilities, oof.classes, platforms)
    true_platform = np.asarray([platforms.get(label) or NONE for label in labels])
    right_platform = platform == true_platform
    is_item = platform != NONE
    threshold = 1.0
    for candidate in np.arange(0.30, 1.0, 0.01):
        chosen = is_item & (confidence >= candidate)
        if chosen.any() and right_platform[chosen].mean() >= settings.dispatch_precision:
            threshold = float(round(candidate, 2))
            break
    urgent_truth = np.asarray(data.urgent[:n], dtype=bool)
    scale, shift = _platt(oof.urgent, urgent_truth)
    urgency = 1.0 / (1.0 + np.exp(-(scale * oof.urgent + shift)))
    by_rule = np.asarray([any(w in text for w in data.urgent_words)
                          for text in data.texts[:n]], dtype=bool)
    urgent_threshold = _recall_threshold(urgency, urgent_truth, by_rule,
                                         settings.urgent_recall)
    dispatched = is_item & (confidence >= threshold)
    labelled = labels != NONE
    cv = {
        "examples": float(n),
        "folds": float(settings.folds),
        "item_accuracy_top": _mean((probabilities.argmax(axis=1) == truth)[labelled]),
        "platform_accuracy": _mean(right_platform[labelled]),
        "dispatch_rate": _mean(dispatched[labelled]),
        "platform_precision_dispatched": _mean(right_platform[dispatched]),
        "item_right_share": _mean(((matter == labels) & dispatched)[labelled]),
        "none_to_triage": _mean(~dispatched[~labelled]),
        "urgent_recall": _mean(((urgency >= urgent_threshold) | by_rule)[urgent_truth]),
        "urgent_precision": _mean(urgent_truth[(urgency >= urgent_threshold) | by_rule]),
    }
    return Calibration(float(temperature), threshold, scale, shift, urgent_threshold, cv)


def _mean(values: npt.NDArray[np.bool_]) -> float:
    return float(values.mean()) if len(values) else 0.0


def _log_loss(probabilities: Matrix, truth: npt.NDArray[np.int64]) -> float:
    picked = probabilities[np.arange(len(truth)), truth]
    return float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())


def _platt(scores: npt.NDArray[np.float64], truth: npt.NDArray[np.bool_]) -> tuple[float, float]:
    if truth.all() or not truth.any():
        return 1.0, 0.0
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=1e4, solver="lbfgs").fit(scores.reshape(-1, 1), truth)
    return float(fit.coef_[0][0]), float(fit.intercept_[0])


def _recall_threshold(probability: npt.NDArray[np.float64], truth: npt.NDArray[np.bool_],
                      by_rule: npt.NDArray[np.bool_], recall: float) -> float:
    """The highest threshold at which model and rules together still mark ``recall`` of
    the urgent examples (at most 0.5: a more likely than not danger is always urgent)."""
    if not truth.any():
        return 0.5
    for threshold in np.arange(0.5, 0.0, -0.01):
        if ((probability >= threshold) | by_rule)[truth].mean() >= recall:
            return float(round(threshold, 2))
    return 0.01


def platforms_of(catalogue: MatterCatalogue) -> dict[str, Platform | None]:
    out: dict[str, Platform | None] = {code: m.platform for code, m in catalogue.by_code.items()}
    out[NONE] = None
    return out
