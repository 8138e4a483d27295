"""Which keyword rules a report's text matches, and which of them wins.

Pure functions over a ``CompiledScope`` (the index) and the phrases found in the text:
operators' rules compete by rank and decide; catalogue keywords are evidence for the model,
or compete like operators' rules when there is no model. ``tests/unit/test_rule_index.py``
checks them against a scan of every rule.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.contracts import IntakeReport, RuleMatch
from engine.rules.scope import CompiledScope, KeywordRule

Note = Callable[[str], None] | None


def keyword_match(rule: KeywordRule, word: str) -> RuleMatch:
    match = rule.traces.get(word)
    if match is None:
        match = rule.traces[word] = RuleMatch(field="matter_code", rule=rule.id,
                                              layer=rule.layer, why=f"keyword '{word}'")
    return match


def keyword_evidence(scope: CompiledScope, report: IntakeReport, found: set[str], prefix: str,
                     catalogue_decides: bool, note: Note
                     ) -> tuple[tuple[KeywordRule, str] | None, dict[str, str]]:
    """The best operators' rule that applies, and the catalogue items whose keywords apply.

    Operators' rules (any layer's ``classify:``) are meant to decide: the highest weight
    wins, then the longest matched keyword, then the most specific layer. Catalogue
    keywords are generic: they are the model's evidence (item → keyword), or, with
    ``catalogue_decides`` (no model), they compete like operators' rules. Ranks are total,
    so the decision does not depend on the order words are seen; explaining takes them in
    a fixed order so that its lines are the same in every process.
    """
    best: KeywordRule | None = None
    best_rank: tuple[int, int, int, str] | None = None
    best_word = ""
    named: dict[str, str] = {}
    own, shared = scope.keyword_choices, scope.shared_choices  # see CompiledScope.base
    for word in found if note is None else sorted(found):
        choices = own.get(word)
        for rule in choices if choices is not None else shared.get(word, ()):
            if prefix and not rule.matter.startswith(prefix):
                continue
            if rule.conditional:
                unmet = _unmet(rule, report, found)
                if unmet:
                    if note:
                        note(f"  '{rule.id}' ({rule.layer}) {unmet}")
                    continue
            if rule.layer == "catalogue" and not catalogue_decides:
                named.setdefault(rule.matter, word)
                continue
            rank = (-rule.weight, -len(word), rule.order, word)
            if best_rank is None or rank < best_rank:
                if note and best is not None and best is not rule:
                    note(f"  '{best.id}' lost to '{rule.id}'")
                best, best_rank, best_word = rule, rank, word
            elif note and best is not None and rule is not best:
                note(f"  '{rule.id}' ({rule.layer}) matched '{word}' but ranks below "
                     f"'{best.id}'")
            if note is None:
                break  # the word's later rules rank lower still; only explaining needs them
        if note:
            for rule_id, (rule, layer) in sorted(scope.disabled.items()):
                if word in rule.keywords:
                    note(f"  '{rule_id}' matched '{word}' but layer {layer} switches it off "
                         "(disable:)")
    if note:
        if best is not None:
            note(f"matter: '{best.id}' ({best.layer}, weight {best.weight}) matched "
                 f"'{best_word}' → {best.matter}")
        elif named:
            note("matter: no operators' rule matched; catalogue keywords: "
                 + ", ".join(f"'{w}' → {c}" for c, w in sorted(named.items())))
        else:
            note("matter: no keyword rule matched")
    return (best, best_word) if best is not None else None, named


def best_keyword_rule(scope: CompiledScope, report: IntakeReport, found: set[str], prefix: str,
                      note: Note) -> tuple[KeywordRule, str] | None:
    """The best rule when every keyword rule competes by rank, catalogue ones included: the
    decision without a model (and the index's property tests)."""
    return keyword_evidence(scope, report, found, prefix, True, note)[0]


def _unmet(rule: KeywordRule, report: IntakeReport, found: set[str]) -> str | None:
    """Why a rule whose keyword matched still does not apply, or None when it does."""
    if rule.channels and report.channel not in rule.channels:
        return f"skipped: only for {sorted(rule.channels)}"
    for word in rule.exclude:
        if word in found:
            return f"vetoed by '{word}'"
    if rule.patterns and not all(p.search(report.description) for p in rule.patterns):
        return "keyword matched but a pattern did not"
    return None
