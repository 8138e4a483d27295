"""Routing rules after merging layers: one ordered table per place, indexed by matter prefix.

Semantics (the whole game, documented in README "Routing"): rules are tried in order, most
specific layer first, then file order; a rule whose conditions all hold applies (first lead,
first sla and first priority override win; assisting departments accumulate) and ends the
search unless it says ``continue``. When no applied rule gave a lead, the default route does.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING

from engine.contracts import Priority
from engine.durations import to_timedelta

if TYPE_CHECKING:
    from engine.rules.layers import Layer

DEFAULT_MAX_RETURNS = 2


@dataclass(frozen=True)
class RouteRule:
    id: str
    layer: str
    file: str
    line: int
    matters: tuple[str, ...]
    divisions: tuple[str, ...]
    priorities: frozenset[str]
    channels: frozenset[str]
    time: str | None
    lead: str | None
    assist: tuple[str, ...]
    sla: str | None
    priority: Priority | None
    continue_: bool
    order: int = 0


@dataclass(frozen=True)
class DefaultRoute:
    lead: str
    sla: str
    layer: str
    file: str
    line: int


@dataclass(frozen=True)
class MergeRule:
    matters: tuple[str, ...]
    distance_m: int
    window: timedelta


@dataclass
class RoutingTable:
    name: str
    rules: list[RouteRule]
    default: DefaultRoute | None
    merges: list[MergeRule]
    max_returns: int
    _by_prefix: dict[str, list[RouteRule]] = field(default_factory=dict, repr=False)
    _unconditional: list[RouteRule] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        for rule in self.rules:
            if rule.matters:
                for prefix in rule.matters:
                    self._by_prefix.setdefault(prefix, []).append(rule)
            else:
                self._unconditional.append(rule)
        self._lengths = sorted({len(p) for p in self._by_prefix})

    def candidates(self, matter_code: str) -> list[RouteRule]:
        """Rules that can apply to this matter, in order; their other conditions still count."""
        out = list(self._unconditional)
        for n in self._lengths:
            out.extend(self._by_prefix.get(matter_code[:n], ()))
        out.sort(key=_order)
        return out

    def merge_rule(self, matter_code: str) -> MergeRule | None:
        """The most specific merge rule for a matter (longest matching prefix)."""
        best: tuple[int, MergeRule] | None = None
        for rule in self.merges:
            for prefix in rule.matters:
                if matter_code.startswith(prefix) and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), rule)
        return best[1] if best else None


def _order(rule: RouteRule) -> int:
    return rule.order


def compile_routing(layers: list[Layer], name: str) -> RoutingTable:
    """Overlay route rules least specific first: same id overrides, ``disable`` removes."""
    rules: dict[str, tuple[int, RouteRule]] = {}
    default: DefaultRoute | None = None
    merges: list[MergeRule] = []
    max_returns = DEFAULT_MAX_RETURNS
    for layer in layers:
        for rule_id in layer.file.disable:
            rules.pop(rule_id, None)
        for i, r in enumerate(layer.file.route):
            rules.pop(r.id, None)
            rules[r.id] = (layer.depth, RouteRule(
                r.id, layer.name, layer.doc.file, layer.line("route", i), tuple(r.when.matters),
                tuple(r.when.divisions), frozenset(r.when.priorities),
                frozenset(r.when.channels), r.when.time, r.lead, tuple(r.assist), r.sla,
                r.priority, r.continue_))
        if layer.file.default_route is not None:
            d = layer.file.default_route
            default = DefaultRoute(d.lead, d.sla, layer.name, layer.doc.file,
                                   layer.line("default_route"))
        # A more specific layer's merge rules come first, so they win ties of prefix length.
        merges[:0] = [MergeRule(tuple(m.matters), m.distance_m, to_timedelta(m.window))
                      for m in layer.file.merge]
        if layer.file.max_returns is not None:
            max_returns = layer.file.max_returns
    ordered = sorted(rules.values(), key=lambda pair: -pair[0])  # stable: file order kept
    table = [replace(rule, order=i) for i, (_, rule) in enumerate(ordered)]
    return RoutingTable(name, table, default, merges, max_returns)
