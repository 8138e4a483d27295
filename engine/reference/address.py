"""Place an incident by its address text when it has neither grid code nor coordinates.

Hotline operators type addresses like "余杭区仓前街道太炎社区文一西路…". One Aho-Corasick
pass finds every township and community name in the text; the most specific name that is
consistent with the others wins. A community name shared by two townships counts only when
the township is named too, since guessing would dispatch to the wrong place.
"""

from __future__ import annotations

from collections import defaultdict

import ahocorasick

from engine.reference.places import Division


class AddressParser:
    def __init__(self, divisions: list[Division]):
        self._by_name: dict[str, list[Division]] = defaultdict(list)
        for division in divisions:
            if division.level not in ("township", "community"):
                continue
            for name in {division.name, division.short_name}:
                if name and len(name) >= 3:
                    self._by_name[name].append(division)
        self._automaton = ahocorasick.Automaton()
        for name in self._by_name:
            self._automaton.add_word(name, name)
        if self._by_name:
            self._automaton.make_automaton()

    def parse(self, text: str) -> Division | None:
        """The most specific division the text names unambiguously, or None."""
        if not self._by_name:
            return None
        hits = [d for _, name in self._automaton.iter(text) for d in self._by_name[name]]
        townships = {d.code: d for d in hits if d.level == "township"}
        communities = {d.code: d for d in hits if d.level == "community"}
        if townships:
            in_named = [d for d in communities.values() if d.parent in townships]
            if len(in_named) == 1:
                return in_named[0]
            if communities and not in_named:
                return None  # the names contradict each other: a person must decide
            return next(iter(townships.values())) if len(townships) == 1 else None
        if len(communities) == 1:
            return next(iter(communities.values()))
        return None
