"""The rules in effect for one place, indexed for the per-report path.

A ``CompiledScope`` is what ``RuleSet.compile`` makes of the catalogue and the layers that
apply to a county (or to the province): layered rules in effective order, and the indexes a
report is decided with. One Aho-Corasick pass over the text finds every phrase; per word
the rules are listed best first; priority rules are indexed by what can trigger them. So
the cost per report does not grow with the number of rules, and a county's scope shares
what it can with the province's (see ``base``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from operator import itemgetter

import ahocorasick

from engine.contracts import Priority, RuleMatch

_second = itemgetter(1)  # automaton.iter yields (end index, word)


@dataclass(frozen=True)
class RuleOrigin:
    """Where a rule was written: what every error, explanation and trace points at."""

    id: str
    layer: str
    line: int
    file: str


@dataclass(frozen=True)
class KeywordRule(RuleOrigin):
    """A classification rule after merging: where it came from and what it needs."""

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
    # The trace entry for each keyword that decided a matter, built the first time: kept on
    # the rule, which a report has just read, rather than in a table it would find cold.
    traces: dict[str, RuleMatch] = field(init=False, repr=False, compare=False,
                                         default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditional",
                           bool(self.channels or self.exclude or self.patterns))

    @property
    def rank(self) -> tuple[int, int]:
        """Sort key: the smallest rank wins (highest weight, then most specific, then first)."""
        return (-self.weight, self.order)


@dataclass(frozen=True)
class PriorityRule(RuleOrigin):
    """A priority rule after merging: the first whose conditions all hold sets the priority."""

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
    # The province's scope, for a county's: most keywords choose among the same rules in
    # every county, so a county keeps only the words its own layers change and reads the
    # rest from the province's. A hundred full copies (one per county) were a hundred
    # tables that each report found cold in the caches.
    base: CompiledScope | None = field(repr=False, default=None)
    # Rules a layer's ``disable:`` switched off here: rule id → (the rule, the layer). Their
    # keywords still show in explanations, and the model does not dispatch a disabled
    # catalogue item on its own (the layer meant it for a person to decide).
    disabled: dict[str, tuple[KeywordRule, str]] = field(repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.automaton is None:
            self.automaton = keyword_automaton(
                [w for r in self.classify for w in (*r.keywords, *r.exclude)]
                + [w for r in self.priority for w in r.keywords])
        by_keyword: dict[str, list[KeywordRule]] = {}
        for rule in self.classify:
            for word in rule.keywords:
                by_keyword.setdefault(word, []).append(rule)
        # Per word, best rank first: the first rule of a word whose conditions hold is the
        # best that word can give, so a report stops looking at the word there.
        choices = {word: tuple(sorted(rules, key=_by_rank))
                   for word, rules in by_keyword.items()}
        self.shared_choices: dict[str, tuple[KeywordRule, ...]] = {}
        if self.base is None:
            self.keyword_choices = choices
        else:
            if self.base.base is not None:
                raise ValueError(f"{self.base.name} has a base itself: give its base instead")
            self.shared_choices = self.base.keyword_choices
            self.keyword_choices = {w: c for w, c in choices.items()
                                    if self.shared_choices.get(w) != c}
            self.keyword_choices.update(
                {w: () for w in self.shared_choices if w not in choices})

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
        self.prefix_lengths: list[int] = sorted({len(p) for p in self.priority_by_prefix})
        self.disabled_items: dict[str, str] = {
            rule.matter: layer for rule, layer in self.disabled.values()
            if rule.layer == "catalogue"}
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
                                 if r.holds_for(matter, channel)}.values(), key=by_order))
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


_STANDING_MEMO_LIMIT = 100_000


def by_order(rule: KeywordRule | PriorityRule) -> int:
    """Effective order: more specific layers first, then each file's order."""
    return rule.order


def _by_rank(rule: KeywordRule) -> tuple[int, int]:
    return rule.rank
