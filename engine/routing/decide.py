"""The routing decision as a pure function of the classified record and the rules.

Targets are department *roles resolved by jurisdiction*, so one provincial rule ("the market
supervision office of the township that contains the grid") serves every township. Every
case has exactly one lead; when no rule yields a usable one, the locality owns it (属地兜底:
the township's command room, else the county command centre).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.calendar import WorkingHours, is_working_time
from engine.contracts import Classified, Priority, RuleMatch
from engine.routing.table import RouteRule
from engine.rules import RuleSet

COMMAND_ROLE = "zhzx"


@dataclass(frozen=True)
class RouteDecision:
    lead: str
    assist: tuple[str, ...]
    sla: str
    priority: Priority
    matched: tuple[RuleMatch, ...] = field(default=())
    revision: str = ""  # the rule set that decided: frozen on the assignments it produces


def resolve_target(ruleset: RuleSet, target: str, matter_code: str,
                   chain: list[str]) -> str | None:
    """The department a target names for this place, or None when there is none."""
    if target == "matter":
        target = ruleset.matters.by_code[matter_code].role
    return ruleset.departments.resolve(target, chain)


def _applies(rule: RouteRule, record: Classified, hours: WorkingHours) -> bool:
    place = record.grid_code or record.division_chain[-1]
    if rule.divisions and not any(place.startswith(p) for p in rule.divisions):
        return False
    if rule.priorities and record.priority not in rule.priorities:
        return False
    if rule.channels and record.channel not in rule.channels:
        return False
    if rule.time is not None:
        # The county's office hours, as its SLA deadlines use (Yuhang's summer afternoons
        # start at 14:30: 14:10 in August is off hours there).
        working = is_working_time(record.received_at, hours)
        if working != (rule.time == "working"):
            return False
    return True


def route(ruleset: RuleSet, record: Classified, exclude: frozenset[str] = frozenset(),
          returns: int = 0) -> RouteDecision:
    """Lead, assisting departments, SLA policy and priority for a classified incident.

    ``exclude`` holds departments that returned the case (回退): re-routing skips them.
    After ``max_returns`` returns the county command centre takes the case.
    """
    chain = record.division_chain
    county = chain[2] if len(chain) > 2 else None
    table = ruleset.routing_for(county)
    matter = record.matter_code
    lead: str | None = None
    assist: list[str] = []
    sla: str | None = None
    priority: Priority | None = None
    matched: list[RuleMatch] = []

    def usable(target: str) -> str | None:
        code = resolve_target(ruleset, target, matter, chain)
        return code if code is not None and code not in exclude else None

    if returns >= table.max_returns:
        lead = usable(f"county.{COMMAND_ROLE}") or f"{chain[2][:6]}.{COMMAND_ROLE}"
        matched.append(RuleMatch(field="route", rule="max-returns", layer="routing",
                                 why=f"returned {returns} times: the command centre decides"))
    else:
        hours = ruleset.sla_for(county).hours
        for rule in table.candidates(matter):
            if not _applies(rule, record, hours):
                continue
            if rule.lead and lead is None:
                lead = usable(rule.lead)
            for target in rule.assist:
                code = usable(target)
                if code is not None and code not in assist:
                    assist.append(code)
            sla = sla or rule.sla
            priority = priority or rule.priority
            matched.append(RuleMatch(field="route", rule=rule.id, layer=rule.layer,
                                     why=f"lead {rule.lead}" if rule.lead else "applied"))
            if not rule.continue_ and lead is not None:
                break
        if lead is None and table.default is not None:
            lead = usable(table.default.lead)
            if lead is not None:
                matched.append(RuleMatch(field="route", rule="default_route",
                                         layer=table.default.layer,
                                         why=f"lead {table.default.lead}"))
        if lead is None:
            lead = (usable(f"township.{COMMAND_ROLE}") or usable(f"county.{COMMAND_ROLE}")
                    or f"{chain[2][:6]}.{COMMAND_ROLE}")
            matched.append(RuleMatch(field="route", rule="locality-fallback", layer="routing",
                                     why="no usable lead: the locality's command room (属地兜底)"))
    default_sla = table.default.sla if table.default else "default"
    return RouteDecision(lead=lead, assist=tuple(a for a in assist if a != lead),
                         sla=sla or default_sla, priority=priority or record.priority,
                         matched=tuple(matched), revision=ruleset.revision)
