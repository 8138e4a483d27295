"""The model's part of the matter decision, as a pure function of its scores and the scope.

The rules stage asks the model only when no explicit code, channel category or operators'
keyword rule decided (``engine.classify.decide_matter``). Catalogue keywords found in the
text are evidence here, not verdicts (``MatterModel.with_evidence``). The model dispatches
by itself only when the platform it chose is at least as probable as the threshold that
cross-validation chose for the operators' precision target, and never an item that a
layer switched off with ``disable: [catalogue:<item>]`` (that layer wants a person to
decide it). Otherwise the report goes to triage with the best three suggestions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from engine.classifier.model import NONE, MatterModel, Scored, Suggestion
from engine.contracts import RuleMatch, TriageReason
from engine.reference.matters import MatterCatalogue
from engine.rules.scope import CompiledScope

Note = Callable[[str], None] | None


class ModelDecision(NamedTuple):
    matter: str | None  # dispatch this item; None: triage for the reason below
    reason: TriageReason
    detail: str
    confidence: float  # of the platform decided
    suggestions: tuple[Suggestion, ...]
    urgency: float
    match: RuleMatch | None


def decide_by_model(model: MatterModel, boost: float, scope: CompiledScope,
                    matters: MatterCatalogue, text: str, named: set[str], prefix: str,
                    note: Note, scored: Scored | None = None) -> ModelDecision:
    """``scored``: the text's scores when a batch computed them (else scored here)."""
    if scored is None:
        scored = model.score(text)
    if named:
        scored = model.with_evidence(scored, named, boost)
    if prefix:
        scored = _within(model, scored, prefix)
    threshold = model.calibration.dispatch_threshold
    if note:
        _explain(model, matters, text, scored, named, threshold, note)
    if scored.platform == NONE:
        return ModelDecision(None, "unclassified", "the classifier judges that the report "
                             f"fits no catalogue item ({scored.platform_confidence:.2f})",
                             scored.platform_confidence, scored.suggestions, scored.urgency,
                             None)
    if scored.platform_confidence < threshold:
        return ModelDecision(None, "uncertain", f"the classifier's best platform "
                             f"{scored.platform} is {scored.platform_confidence:.2f} sure, "
                             f"below the dispatch threshold {threshold:.2f}",
                             scored.platform_confidence, scored.suggestions, scored.urgency,
                             None)
    layer = scope.disabled_items.get(scored.matter)
    if layer is not None:
        if note:
            note(f"  item {scored.matter} is switched off here by layer {layer} (disable: "
                 f"catalogue:{scored.matter}): a person decides it")
        return ModelDecision(None, "uncertain", f"item {scored.matter} is not dispatched "
                             f"automatically here (layer {layer} disables it)",
                             scored.platform_confidence, scored.suggestions, scored.urgency,
                             None)
    match = RuleMatch(field="matter_code", rule=f"model:{model.identity[:8]}",
                      layer="examples", why=f"platform {scored.platform} "
                      f"{scored.platform_confidence:.2f} >= {threshold:.2f}")
    return ModelDecision(scored.matter, "unclassified", "", scored.platform_confidence,
                         scored.suggestions, scored.urgency, match)


def _within(model: MatterModel, scored: Scored, prefix: str) -> Scored:
    """The report named a class or subclass: only its items can be the answer. Their
    probabilities are not renormalised, so a text that the model places elsewhere stays
    unsure (a person decides) instead of becoming sure of the prefix's least bad item."""
    keep = np.asarray([c != NONE and c.startswith(prefix) for c in model.classes])
    probabilities = np.where(keep, scored.probabilities, np.float32(0.0)).astype(np.float32)
    return model._scored(probabilities, scored.urgency, 3)


def _explain(model: MatterModel, matters: MatterCatalogue, text: str, scored: Scored,
             named: set[str], threshold: float, note: Callable[[str], None]) -> None:
    if named:
        note("model: catalogue keywords are evidence for "
             + ", ".join(f"{c} {matters.by_code[c].name}" for c in sorted(named)))
    if scored.platform == NONE:
        note(f"model: fits no catalogue item ({scored.platform_confidence:.2f})")
    else:
        item = matters.by_code[scored.matter]
        verdict = "dispatches" if scored.platform_confidence >= threshold else "too unsure"
        note(f"model: platform {scored.platform} {scored.platform_confidence:.2f} "
             f"(threshold {threshold:.2f}: {verdict}); item {item.code} {item.name}")
        words = model.reasons(text, scored.matter)
        if words:
            note("  words that carried it: " + ", ".join(f"'{w}' {s:.2f}" for w, s in words))
    for i, suggestion in enumerate(scored.suggestions):
        name = matters.by_code[suggestion.matter].name
        note(f"  {'best' if i == 0 else 'runner-up'}: {suggestion.matter} {name} "
             f"{suggestion.confidence:.2f}")
    note(f"model: danger to life {scored.urgency:.3f} (urgent from "
         f"{model.calibration.urgent_threshold:.3f})")
