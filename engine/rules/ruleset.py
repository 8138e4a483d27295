"""The rule set: reference data plus layered, indexed rules, frozen under one revision.

``load.load_rules`` builds it from the files, checked as a whole (``check.py``). Each
place's layered, indexed rules are a ``CompiledScope`` (``scope.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import ahocorasick

from engine.calendar import HolidayYears
from engine.classifier.model import MatterModel
from engine.classifier.settings import ClassifierSettings
from engine.reference.channels import ChannelMaps
from engine.reference.departments import DepartmentRegistry
from engine.reference.examples import ExampleCorpus
from engine.reference.jurisdiction import Jurisdiction
from engine.reference.matters import MatterCatalogue
from engine.routing.table import RoutingTable, compile_routing
from engine.rules.layers import CATALOGUE_WEIGHT, SCOPE_DIGITS, Layer, compile_sla
from engine.rules.scope import (
    CompiledScope,
    KeywordRule,
    PriorityRule,
    by_order,
    keyword_automaton,
)
from engine.sla.policy import SlaTable
from engine.yamlfile import FileProblem

T = TypeVar("T")


class RuleSet:
    """Everything the rules stage decides with, under one content-hash revision."""

    def __init__(self, root: Path, revision: str, matters: MatterCatalogue,
                 jurisdiction: Jurisdiction, departments: DepartmentRegistry,
                 channels: ChannelMaps, layers: list[Layer],
                 holidays: HolidayYears | None = None,
                 examples: ExampleCorpus | None = None,
                 classifier: ClassifierSettings | None = None,
                 model: MatterModel | None = None):
        self.root = root
        self.revision = revision
        self.matters = matters
        self.jurisdiction = jurisdiction
        self.departments = departments
        self.channels = channels
        self.layers = layers
        self.holidays = holidays or HolidayYears()
        self.examples = examples or ExampleCorpus()
        self.classifier = classifier or ClassifierSettings()
        # The model learned from the examples (None without any): part of the revision,
        # trained or loaded with the rest of the rule set and swapped with it atomically.
        self.model = model
        self.warnings: list[FileProblem] = list(self.examples.warnings)
        self._without_model: RuleSet | None = None
        self._scopes: dict[tuple[str, ...], CompiledScope] = {}
        self._routing: dict[tuple[str, ...], RoutingTable] = {}
        self._routing_by_county: dict[str, RoutingTable] = {}
        self._sla: dict[tuple[str, ...], SlaTable] = {}
        self._sla_by_county: dict[str, SlaTable] = {}
        self._by_county: dict[str, CompiledScope] = {}
        self._automaton: ahocorasick.Automaton | None = None
        self._catalogue: list[KeywordRule] | None = None
        self._by_layer: dict[str, tuple[list[KeywordRule], list[PriorityRule]]] = {}

    def without_model(self) -> RuleSet:
        """The same rules deciding as they would without examples (rule tests use it to
        test keyword and priority semantics on their own); built once."""
        if self._without_model is None:
            self._without_model = RuleSet(
                self.root, self.revision, self.matters, self.jurisdiction, self.departments,
                self.channels, self.layers, self.holidays, self.examples, self.classifier)
        return self._without_model

    def urgent_words(self) -> list[str]:
        """Keywords of priority rules that mark a report urgent whatever its matter or
        channel, in any layer: what the urgency threshold is calibrated together with."""
        return sorted({w for layer in self.layers for p in layer.file.priority
                       if p.set == "urgent" and not p.matters and not p.channels
                       for w in p.keywords})

    def scope_for(self, county: str | None) -> CompiledScope:
        """The effective classification rules for a county (12-digit code), or the province's."""
        scope = self._by_county.get(county or "")  # once per report: the common case first
        if scope is None:
            scope = self._per_county(county, self._by_county, self._scopes, self.compile)
        return scope

    def routing_for(self, county: str | None) -> RoutingTable:
        """The layered routing table for a county (12-digit code), or the province's."""
        return self._per_county(county, self._routing_by_county, self._routing,
                                compile_routing)

    def sla_for(self, county: str | None) -> SlaTable:
        """The SLA policies and office hours in force in a county (12-digit code)."""
        return self._per_county(county, self._sla_by_county, self._sla,
                                lambda layers, name: compile_sla(layers, name, self.holidays))

    def _per_county(self, county: str | None, by_county: dict[str, T],
                    by_layers: dict[tuple[str, ...], T],
                    build: Callable[[list[Layer], str], T]) -> T:
        """Compile once per distinct set of applicable layers; remember it per county."""
        found = by_county.get(county or "")
        if found is None:
            key, layers = self._applicable(county)
            names = tuple(la.name for la in layers)
            found = by_layers.get(names)
            if found is None:
                found = by_layers[names] = build(list(layers), key)
            by_county[county or ""] = found
        return found

    def _applicable(self, county: str | None) -> tuple[str, tuple[Layer, ...]]:
        key = county or next((code for code, d in self.jurisdiction.divisions.items()
                              if d.level == "province"), "")
        return key, tuple(la for la in self.layers if key.startswith(la.file.scope))

    def compile(self, layers: list[Layer], name: str) -> CompiledScope:
        """Overlay catalogue keywords and layers, least specific first; ids override, disable.

        Rule objects are built once per rule set and shared by every scope that keeps them
        (see ``_rules_of``); a county's scope stores only the keyword lists its own layers
        change and reads the rest from the province's scope (see ``CompiledScope``).
        """
        classify = {rule.id: rule for rule in self._catalogue_rules()}
        priority: dict[str, PriorityRule] = {}
        disabled: dict[str, tuple[KeywordRule, str]] = {}
        for layer in layers:
            for rule_id in layer.file.disable:
                gone = classify.pop(rule_id, None)
                if gone is not None:
                    disabled[rule_id] = (gone, layer.name)
                priority.pop(rule_id, None)
            keyword_rules, priority_rules = self._rules_of(layer)
            for rule in keyword_rules:
                classify.pop(rule.id, None)
                classify[rule.id] = rule
            for prio in priority_rules:
                priority.pop(prio.id, None)
                priority[prio.id] = prio
        province = self._applicable(None)[1]
        base = None if tuple(layers) == province else self.scope_for(None)
        return CompiledScope(name, [la.name for la in layers],
                             sorted(classify.values(), key=by_order),
                             sorted(priority.values(), key=by_order),
                             self._keyword_automaton(), base, disabled)

    def _catalogue_rules(self) -> list[KeywordRule]:
        if self._catalogue is None:
            self._catalogue = [
                KeywordRule(f"catalogue:{m.code}", "catalogue", m.line, self.matters.file,
                            m.keywords, m.exclude, (), frozenset(), m.code, CATALOGUE_WEIGHT,
                            _order(0, i))
                for i, m in enumerate(m for m in self.matters.by_code.values() if m.keywords)]
        return self._catalogue

    def _rules_of(self, layer: Layer) -> tuple[list[KeywordRule], list[PriorityRule]]:
        """A layer's rules as compiled scopes use them, built once whatever the scopes.

        ``order`` puts more specific layers first and then follows the file, the same for a
        rule in every scope; only its rank against rules of the same scope matters.
        """
        built = self._by_layer.get(layer.name)
        if built is None:
            built = self._by_layer[layer.name] = (
                [KeywordRule(rule.id, layer.name, layer.line("classify", i), layer.doc.file,
                             tuple(rule.keywords), tuple(rule.exclude),
                             tuple(re.compile(p) for p in rule.patterns),
                             frozenset(rule.channels), rule.matter, rule.weight,
                             _order(layer.depth, i))
                 for i, rule in enumerate(layer.file.classify)],
                [PriorityRule(prio.id, layer.name, layer.line("priority", i), layer.doc.file,
                              tuple(prio.keywords), tuple(prio.matters),
                              frozenset(prio.channels), prio.set, _order(layer.depth, i))
                 for i, prio in enumerate(layer.file.priority)])
        return built

    def _keyword_automaton(self) -> ahocorasick.Automaton:
        """Every phrase any scope may look for: catalogue keywords and all layers' rules."""
        if self._automaton is None:
            words = [w for m in self.matters.by_code.values() for w in (*m.keywords, *m.exclude)]
            for layer in self.layers:
                words += [w for r in layer.file.classify for w in (*r.keywords, *r.exclude)]
                words += [w for r in layer.file.priority for w in r.keywords]
            self._automaton = keyword_automaton(words)
        return self._automaton


_DEEPEST = max(SCOPE_DIGITS.values())
_ORDER_STRIDE = 10_000_000  # more rules than any one layer file or catalogue holds


def _order(depth: int, position: int) -> int:
    """Deeper layers first (a county's rules before its city's), then the file's order."""
    return (_DEEPEST - depth) * _ORDER_STRIDE + position


# Rule tests and the evaluation set check decisions and never change one: not in revisions.
