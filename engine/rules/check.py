"""Load-time checks across rule files: references that do not resolve, rules that never win.

Every problem names the file and line and says what to do, because operators fix rules
under time pressure and a rule that silently never fires is worse than a refused reload.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

from engine.routing.table import RouteRule, RoutingTable
from engine.rules.layers import Layer
from engine.rules.scope import CompiledScope, KeywordRule, PriorityRule
from engine.yamlfile import FileProblem

R = TypeVar("R", RouteRule, PriorityRule)

if TYPE_CHECKING:
    from engine.rules.ruleset import RuleSet


def check(ruleset: RuleSet) -> list[FileProblem]:
    problems: list[FileProblem] = []
    roles = {d.role for d in ruleset.departments}
    for matter in ruleset.matters.by_code.values():
        if matter.role not in roles:
            problems.append(FileProblem(ruleset.matters.file, matter.line,
                                        f"item {matter.code} names role '{matter.role}', which "
                                        "no department in departments.yaml has"))
    for channel, index, mapping in ruleset.channels.entries():
        if mapping.matter not in ruleset.matters:
            problems.append(ruleset.channels.doc.problem(
                (channel, index, "matter"),
                f"{channel} category '{mapping.category}' maps to unknown matter "
                f"{mapping.matter}"))
    known_ids = {f"catalogue:{code}" for code in ruleset.matters.by_code}
    for layer in ruleset.layers:
        scope = layer.file.scope
        if not any(code.startswith(scope) for code in ruleset.jurisdiction.divisions):
            problems.append(FileProblem(layer.doc.file, layer.line("scope"),
                                        f"scope {scope} matches no division in divisions.yaml"))
        for rule_id in layer.file.disable:
            if rule_id not in known_ids:
                problems.append(FileProblem(
                    layer.doc.file, layer.line("disable"),
                    f"disable names '{rule_id}', which no lower layer defines "
                    "(catalogue rules are 'catalogue:<item code>')"))
        for i, rule in enumerate(layer.file.classify):
            if rule.matter not in ruleset.matters:
                problems.append(FileProblem(layer.doc.file, layer.line("classify", i, "matter"),
                                            f"rule '{rule.id}' classifies as unknown matter "
                                            f"{rule.matter}"))
        for i, prio in enumerate(layer.file.priority):
            for prefix in prio.matters:
                if not ruleset.matters.is_prefix(prefix):
                    problems.append(FileProblem(
                        layer.doc.file, layer.line("priority", i, "matters"),
                        f"priority rule '{prio.id}' names matter prefix '{prefix}', which "
                        "matches no catalogue item"))
        ids = ([r.id for r in layer.file.classify] + [r.id for r in layer.file.priority]
               + [r.id for r in layer.file.route])
        for rule_id in {i for i in ids if ids.count(i) > 1}:
            problems.append(FileProblem(layer.doc.file, 0,
                                        f"rule id '{rule_id}' is used twice in one layer"))
        known_ids.update(ids)
    problems.extend(_routing_problems(ruleset))
    problems.extend(_sla_problems(ruleset))
    if problems:
        return problems
    # Shadowing is a property of each effective set: check every scope that exists.
    seen: set[int] = set()
    for code, division in ruleset.jurisdiction.divisions.items():
        if division.level in ("province", "county"):
            county = code if division.level == "county" else None
            compiled = ruleset.scope_for(county)
            if id(compiled) not in seen:
                seen.add(id(compiled))
                problems.extend(shadowed(compiled))
            table = ruleset.routing_for(county)
            if id(table) not in seen:
                seen.add(id(table))
                problems.extend(route_shadowed(table))
    return sorted(set(problems), key=lambda p: (p.file, p.line, p.message))


def _routing_problems(ruleset: RuleSet) -> list[FileProblem]:
    """Targets, codes and the default route of the routing rules, in every layer."""
    problems: list[FileProblem] = []
    roles = {d.role for d in ruleset.departments}
    places = set(ruleset.jurisdiction.divisions) | set(ruleset.jurisdiction.grids)

    def check_target(layer: Layer, path: tuple[str | int, ...], target: str) -> None:
        if target == "matter":
            return
        if "." in target and target.split(".")[0].isdigit():
            if target not in ruleset.departments:
                problems.append(FileProblem(layer.doc.file, layer.line(*path),
                                            f"department '{target}' is not in departments.yaml"))
        elif target.rpartition(".")[2] not in roles:
            problems.append(FileProblem(layer.doc.file, layer.line(*path),
                                        f"role '{target.rpartition('.')[2]}' belongs to no "
                                        "department in departments.yaml"))

    for layer in ruleset.layers:
        for i, rule in enumerate(layer.file.route):
            if rule.lead:
                check_target(layer, ("route", i, "lead"), rule.lead)
            for target in rule.assist:
                check_target(layer, ("route", i, "assist"), target)
            for prefix in rule.when.matters:
                if not ruleset.matters.is_prefix(prefix):
                    problems.append(FileProblem(layer.doc.file, layer.line("route", i, "when"),
                                                f"route rule '{rule.id}' names matter prefix "
                                                f"'{prefix}', which matches no catalogue item"))
            for prefix in rule.when.divisions:
                if not any(code.startswith(prefix) for code in places):
                    problems.append(FileProblem(layer.doc.file, layer.line("route", i, "when"),
                                                f"route rule '{rule.id}' names division prefix "
                                                f"'{prefix}', which matches no division or grid"))
        if layer.file.default_route is not None:
            check_target(layer, ("default_route", "lead"), layer.file.default_route.lead)
        for i, merge in enumerate(layer.file.merge):
            for prefix in merge.matters:
                if not ruleset.matters.is_prefix(prefix):
                    problems.append(FileProblem(layer.doc.file, layer.line("merge", i),
                                                f"merge rule names matter prefix '{prefix}', "
                                                "which matches no catalogue item"))
    for code, division in ruleset.jurisdiction.divisions.items():
        if division.level == "county" and ruleset.routing_for(code).default is None:
            first = ruleset.layers[0].doc.file if ruleset.layers else "rules/layers"
            problems.append(FileProblem(first, 0, f"no default_route applies to county {code}: "
                                                  "add one to the province layer"))
    return problems


def _sla_problems(ruleset: RuleSet) -> list[FileProblem]:
    """Every policy a route names must exist where the route applies; prefixes must match."""
    problems: list[FileProblem] = []
    for layer in ruleset.layers:
        for name, policy in layer.file.sla.items():
            for i, override in enumerate(policy.overrides):
                for prefix in override.matters:
                    if not ruleset.matters.is_prefix(prefix):
                        problems.append(FileProblem(
                            layer.doc.file, layer.line("sla", name, "overrides", i),
                            f"SLA policy '{name}' override names matter prefix '{prefix}', "
                            "which matches no catalogue item"))
    missing: dict[tuple[str, int, str, str], list[str]] = {}
    for code, division in ruleset.jurisdiction.divisions.items():
        if division.level not in ("province", "county"):
            continue
        county = code if division.level == "county" else None
        policies = ruleset.sla_for(county).policies
        table = ruleset.routing_for(county)
        named = [(r.sla, r.file, r.line, f"route rule '{r.id}'") for r in table.rules if r.sla]
        if table.default is not None:
            named.append((table.default.sla, table.default.file, table.default.line,
                          "default_route"))
        if "default" not in policies:
            first = ruleset.layers[0].doc.file if ruleset.layers else "rules/layers"
            named.append(("default", first, 0, "the fallback"))
        for sla, file, line, what in named:
            if sla is not None and sla not in policies:
                missing.setdefault((file, line, what, sla), []).append(code)
    for (file, line, what, sla), codes in missing.items():
        where = codes[0] if len(codes) == 1 else f"{len(codes)} divisions ({codes[0]}, ...)"
        problems.append(FileProblem(file, line, f"{what} names SLA policy '{sla}', which no "
                                                f"layer defines for {where}: add it under "
                                                "'sla:' in a layer that covers them"))
    return sorted(set(problems), key=lambda p: (p.file, p.line, p.message))


def _route_rule_shadows(s: RouteRule, r: RouteRule) -> bool:
    """True when earlier rule ``s`` ends the search whenever later rule ``r`` would match."""
    if s.continue_ or s.lead is None or s.order >= r.order:
        return False

    def covers(mine: tuple[str, ...], theirs: tuple[str, ...]) -> bool:
        return not mine or (bool(theirs) and all(any(t.startswith(m) for m in mine)
                                                 for t in theirs))
    return (covers(s.matters, r.matters) and covers(s.divisions, r.divisions)
            and (not s.priorities or (bool(r.priorities) and r.priorities <= s.priorities))
            and (not s.channels or (bool(r.channels) and r.channels <= s.channels))
            and (s.time is None or s.time == r.time))


def _shadowed_by_earlier(rules: Sequence[R],
                         shadows: Callable[[R, R], bool]) -> Iterator[tuple[R, R]]:
    """Each ordered rule that an earlier one always pre-empts, with the first such rule."""
    for i, rule in enumerate(rules):
        earlier = next((e for e in rules[:i] if shadows(e, rule)), None)
        if earlier is not None:
            yield rule, earlier


def route_shadowed(table: RoutingTable) -> list[FileProblem]:
    return [FileProblem(rule.file, rule.line,
                        f"route rule '{rule.id}' ({rule.layer}) is unreachable in {table.name}: "
                        f"'{earlier.id}' (line {earlier.line}) comes first, matches whenever it "
                        "does and ends the search; put the narrower rule first")
            for rule, earlier in _shadowed_by_earlier(table.rules, _route_rule_shadows)]


def _always_with(rule_words: tuple[str, ...], other_words: tuple[str, ...]) -> bool:
    """True when any text containing one of ``rule_words`` contains one of ``other_words``."""
    return all(any(o in w for o in other_words) for w in rule_words)


def _keyword_rule_shadows(s: KeywordRule, r: KeywordRule) -> bool:
    triggers = _always_with(r.keywords, s.keywords)
    # S's vetoes must veto R too, or a text could pass R and fail S.
    vetoes_ok = all(any(e_r in e_s for e_r in r.exclude) for e_s in s.exclude)
    channels_ok = not s.channels or (bool(r.channels) and r.channels <= s.channels)
    beats = s.weight > r.weight or (s.weight == r.weight and s.order < r.order
                                    and set(s.keywords) == set(r.keywords))
    return triggers and vetoes_ok and channels_ok and not s.patterns and beats


def _priority_rule_shadows(s: PriorityRule, r: PriorityRule) -> bool:
    if s.order >= r.order:
        return False
    keywords_ok = not s.keywords or (bool(r.keywords) and _always_with(r.keywords, s.keywords))
    matters_ok = not s.matters or (bool(r.matters) and all(
        any(m.startswith(p) for p in s.matters) for m in r.matters))
    channels_ok = not s.channels or (bool(r.channels) and r.channels <= s.channels)
    return keywords_ok and matters_ok and channels_ok


def shadowed(scope: CompiledScope) -> list[FileProblem]:
    """Rules that can never win in this scope, because another always matches and beats them."""
    problems = []
    by_word: dict[str, list[KeywordRule]] = {}
    for rule in scope.classify:
        for word in rule.keywords:
            by_word.setdefault(word, []).append(rule)
    for rule in scope.classify:
        # Candidates: rules sharing a keyword that is a substring of one of this rule's.
        candidates = {id(s): s for w in rule.keywords for word in scope.found(w)
                      for s in by_word.get(word, ()) if s is not rule}
        for other in candidates.values():
            if _keyword_rule_shadows(other, rule):
                problems.append(FileProblem(
                    rule.file, rule.line,
                    f"rule '{rule.id}' ({rule.layer}) can never win in {scope.name}: "
                    f"'{other.id}' ({other.layer}, line {other.line}) matches whenever it "
                    "does and ranks higher; raise its weight, narrow the other rule, or "
                    "remove it"))
                break
    for prio, earlier in _shadowed_by_earlier(scope.priority, _priority_rule_shadows):
        problems.append(FileProblem(
            prio.file, prio.line,
            f"priority rule '{prio.id}' ({prio.layer}) is unreachable in {scope.name}: "
            f"'{earlier.id}' (line {earlier.line}) comes first and matches whenever it does; "
            "reorder or narrow them"))
    return problems
