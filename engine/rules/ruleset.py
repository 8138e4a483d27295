"""The rule set: reference data plus merged, indexed rule layers, frozen under one revision.

Everything that can be wrong with the rules is found here, at load time: unknown matter
codes, roles or scopes, disabling a rule that does not exist, rules that can never win
(shadowed). Matching is indexed: one Aho-Corasick pass over the text finds every keyword
of every rule, so the cost per event does not grow with the number of rules.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from operator import itemgetter
from pathlib import Path
from typing import TypeVar

import ahocorasick

from engine.contracts import Priority, RuleMatch
from engine.reference.channels import ChannelMaps
from engine.reference.departments import DepartmentRegistry
from engine.reference.jurisdiction import Jurisdiction
from engine.reference.matters import MatterCatalogue
from engine.routing.table import RoutingTable, compile_routing
from engine.rules.layers import CATALOGUE_WEIGHT, Layer, load_layers
from engine.sla.policy import SlaTable, compile_sla
from engine.yamlfile import FileProblem, FileProblems

_second = itemgetter(1)  # automaton.iter yields (end index, word)


@dataclass(frozen=True)
class KeywordRule:
    """A classification rule after merging: where it came from and what it needs."""

    id: str
    layer: str
    line: int
    file: str
    keywords: tuple[str, ...]
    exclude: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]
    channels: frozenset[str]
    matter: str
    weight: int
    order: int = 0  # position after merging: more specific layers first
    # Whether the keyword alone is not enough (channels, exclusions or patterns to check);
    # most rules need nothing more, and the per-report loop skips the checks for them.
    conditional: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditional",
                           bool(self.channels or self.exclude or self.patterns))

    @property
    def rank(self) -> tuple[int, int]:
        """Sort key: the smallest rank wins (highest weight, then most specific, then first)."""
        return (-self.weight, self.order)


@dataclass(frozen=True)
class PriorityRule:
    id: str
    layer: str
    line: int
    file: str
    keywords: tuple[str, ...]
    matters: tuple[str, ...]
    channels: frozenset[str]
    set: Priority
    order: int = 0
    # What a classification's trace says when this rule sets the priority: built once.
    match: RuleMatch = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "match", RuleMatch(field="priority", rule=self.id,
                                                    layer=self.layer, why=f"sets {self.set}"))

    def holds_for(self, matter: str, channel: str) -> bool:
        """Whether the matter and channel conditions hold (keywords are checked by the index)."""
        return ((not self.matters or any(matter.startswith(p) for p in self.matters))
                and (not self.channels or channel in self.channels))


RuleT = TypeVar("RuleT", KeywordRule, PriorityRule)
T = TypeVar("T")


@dataclass
class CompiledScope:
    """The effective rules for one place (a county, or the province when unplaced)."""

    name: str
    layers: list[str]
    classify: list[KeywordRule]
    priority: list[PriorityRule]
    # The rule set's one automaton over every keyword of every layer, shared by all scopes:
    # it only finds phrases, and words of other scopes index no rule here. One per scope
    # meant a hundred at province scale, and each report evicting another from the caches.
    automaton: ahocorasick.Automaton = field(repr=False, default=None)

    def __post_init__(self) -> None:
        if self.automaton is None:
            self.automaton = keyword_automaton(
                [w for r in self.classify for w in (*r.keywords, *r.exclude)]
                + [w for r in self.priority for w in r.keywords])
        self.by_keyword: dict[str, list[KeywordRule]] = {}
        for rule in self.classify:
            for word in rule.keywords:
                self.by_keyword.setdefault(word, []).append(rule)
        # The same, best rank first: the first rule of a word whose conditions hold is the
        # best that word can give, so a report stops looking at the word there.
        self.keyword_choices: dict[str, tuple[KeywordRule, ...]] = {
            word: tuple(sorted(rules, key=_by_rank)) for word, rules in self.by_keyword.items()}
        # Priority rules indexed by what can trigger them, so none is tried in vain.
        self.priority_by_keyword: dict[str, list[PriorityRule]] = {}
        self.priority_by_prefix: dict[str, list[PriorityRule]] = {}
        self.priority_by_channel: dict[str, list[PriorityRule]] = {}
        for prio in self.priority:
            if prio.keywords:
                for word in prio.keywords:
                    self.priority_by_keyword.setdefault(word, []).append(prio)
            elif prio.matters:
                for prefix in prio.matters:
                    self.priority_by_prefix.setdefault(prefix, []).append(prio)
            else:
                for channel in prio.channels:
                    self.priority_by_channel.setdefault(channel, []).append(prio)
        self.prefix_lengths = sorted({len(p) for p in self.priority_by_prefix})
        self._standing: dict[tuple[str, str], tuple[PriorityRule, ...]] = {}

    def priority_rule(self, found: set[str], matter: str, channel: str) -> PriorityRule | None:
        """The first priority rule in effective order whose conditions all hold, if any."""
        standing = self._standing.get((matter, channel))
        if standing is None:
            standing = self._standing_rules(matter, channel)
        first = standing[0] if standing else None
        for word in found:
            for rule in self.priority_by_keyword.get(word, ()):
                if (first is None or rule.order < first.order) and rule.holds_for(matter, channel):
                    first = rule
        return first

    def _standing_rules(self, matter: str, channel: str) -> tuple[PriorityRule, ...]:
        """Rules without keywords that hold for a matter and channel, in effective order.

        They depend on nothing else in the report, so each pair is worked out once. Channel
        names come from reports, so the memo is bounded: it is dropped when it grows large.
        """
        candidates = [r for n in self.prefix_lengths
                      for r in self.priority_by_prefix.get(matter[:n], ())]
        candidates.extend(self.priority_by_channel.get(channel, ()))
        standing = tuple(sorted({r.order: r for r in candidates
                                 if r.holds_for(matter, channel)}.values(), key=_by_order))
        if len(self._standing) >= _STANDING_MEMO_LIMIT:
            self._standing.clear()
        self._standing[(matter, channel)] = standing
        return standing

    def found(self, text: str) -> set[str]:
        """The phrases of any scope in ``text`` (words of other scopes index no rule here)."""
        if self.automaton.kind != ahocorasick.AHOCORASICK:
            return set()  # no phrase at all: an empty automaton cannot search
        return set(map(_second, self.automaton.iter(text)))


def keyword_automaton(words: list[str]) -> ahocorasick.Automaton:
    """An Aho-Corasick automaton that reports each of ``words`` found in a text."""
    automaton = ahocorasick.Automaton()
    for word in set(words):
        automaton.add_word(word, word)
    if words:
        automaton.make_automaton()
    return automaton


class RuleSet:
    """Everything the rules stage decides with, under one content-hash revision."""

    def __init__(self, root: Path, revision: str, matters: MatterCatalogue,
                 jurisdiction: Jurisdiction, departments: DepartmentRegistry,
                 channels: ChannelMaps, layers: list[Layer]):
        self.root = root
        self.revision = revision
        self.matters = matters
        self.jurisdiction = jurisdiction
        self.departments = departments
        self.channels = channels
        self.layers = layers
        self._scopes: dict[tuple[str, ...], CompiledScope] = {}
        self._routing: dict[tuple[str, ...], RoutingTable] = {}
        self._routing_by_county: dict[str, RoutingTable] = {}
        self._sla: dict[tuple[str, ...], SlaTable] = {}
        self._sla_by_county: dict[str, SlaTable] = {}
        self._by_county: dict[str, CompiledScope] = {}
        self._automaton: ahocorasick.Automaton | None = None

    @classmethod
    def load(cls, root: Path) -> RuleSet:
        reference = root / "reference"
        problems: list[FileProblem] = []

        def collect(load: Callable[[], T]) -> T | None:
            """Load one file, keeping its problems, so one run reports every broken file."""
            try:
                return load()
            except FileProblems as exc:
                problems.extend(exc.problems)
                return None

        matters = collect(lambda: MatterCatalogue.load(reference / "matters.yaml"))
        jurisdiction = collect(lambda: Jurisdiction.load(reference / "divisions.yaml",
                                                         reference / "grids.geojson"))
        departments = collect(lambda: DepartmentRegistry.load(reference / "departments.yaml"))
        channels = collect(lambda: ChannelMaps.load(reference / "channels.yaml"))
        layers = collect(lambda: load_layers(root / "layers"))
        if (problems or matters is None or jurisdiction is None or departments is None
                or channels is None or layers is None):
            raise FileProblems(problems)
        ruleset = cls(root, revision_of(root), matters, jurisdiction, departments, channels,
                      layers)
        from engine.rules.check import check

        problems = check(ruleset)
        if problems:
            raise FileProblems(problems)
        return ruleset

    def scope_for(self, county: str | None) -> CompiledScope:
        """The effective classification rules for a county (12-digit code), or the province's."""
        scope = self._by_county.get(county or "")  # once per report: the common case first
        if scope is None:
            scope = self._per_county(county, self._by_county, self._scopes, self.compile)
        return scope

    def routing_for(self, county: str | None) -> RoutingTable:
        """The merged routing table for a county (12-digit code), or the province's."""
        return self._per_county(county, self._routing_by_county, self._routing,
                                compile_routing)

    def sla_for(self, county: str | None) -> SlaTable:
        """The SLA policies and office hours in force in a county (12-digit code)."""
        return self._per_county(county, self._sla_by_county, self._sla, compile_sla)

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
        """Merge catalogue keywords and layers, least specific first; ids override, disable."""
        classify: dict[str, KeywordRule] = {}
        for matter in self.matters.by_code.values():
            if matter.keywords:
                classify[f"catalogue:{matter.code}"] = KeywordRule(
                    f"catalogue:{matter.code}", "catalogue", matter.line, self.matters.file,
                    matter.keywords, matter.exclude, (), frozenset(), matter.code,
                    CATALOGUE_WEIGHT)
        priority: dict[str, PriorityRule] = {}
        depth_of: dict[str, int] = dict.fromkeys(classify, 0)
        for layer in layers:
            for rule_id in layer.file.disable:
                classify.pop(rule_id, None)
                priority.pop(rule_id, None)
            for i, rule in enumerate(layer.file.classify):
                classify.pop(rule.id, None)
                classify[rule.id] = KeywordRule(
                    rule.id, layer.name, layer.line("classify", i), layer.doc.file,
                    tuple(rule.keywords), tuple(rule.exclude),
                    tuple(re.compile(p) for p in rule.patterns), frozenset(rule.channels),
                    rule.matter, rule.weight)
                depth_of[rule.id] = layer.depth
            for i, prio in enumerate(layer.file.priority):
                priority.pop(prio.id, None)
                priority[prio.id] = PriorityRule(
                    prio.id, layer.name, layer.line("priority", i), layer.doc.file,
                    tuple(prio.keywords), tuple(prio.matters), frozenset(prio.channels),
                    prio.set)
                depth_of[prio.id] = layer.depth
        ordered = sorted(classify.values(), key=lambda r: -depth_of[r.id])  # stable
        classify_rules = [_with_order(r, i) for i, r in enumerate(ordered)]
        prio_ordered = sorted(priority.values(), key=lambda r: -depth_of[r.id])
        priority_rules = [_with_order(r, i) for i, r in enumerate(prio_ordered)]
        return CompiledScope(name, [la.name for la in layers], classify_rules, priority_rules,
                             self._keyword_automaton())

    def _keyword_automaton(self) -> ahocorasick.Automaton:
        """Every phrase any scope may look for: catalogue keywords and all layers' rules."""
        if self._automaton is None:
            words = [w for m in self.matters.by_code.values() for w in (*m.keywords, *m.exclude)]
            for layer in self.layers:
                words += [w for r in layer.file.classify for w in (*r.keywords, *r.exclude)]
                words += [w for r in layer.file.priority for w in r.keywords]
            self._automaton = keyword_automaton(words)
        return self._automaton


_STANDING_MEMO_LIMIT = 100_000


def _by_order(rule: PriorityRule) -> int:
    return rule.order


def _by_rank(rule: KeywordRule) -> tuple[int, int]:
    return rule.rank


def _with_order(rule: RuleT, order: int) -> RuleT:
    return replace(rule, order=order)


def revision_of(root: Path) -> str:
    """A content hash of every rule file: the same files give the same revision anywhere."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*")
                       if p.is_file() and "tests" not in p.relative_to(root).parts):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:12]
