"""Who may do what on the broker, as code: ACLs generated from the department registry.

A department reads its own work and nothing else: ``assignments.<dept>``,
``escalations.<dept>`` and ``verdicts.<dept>`` (what became of its answers) through its own
consumer group ``dept-<dept>``, and writes its answers to ``assignments.status``. It cannot
read another department's assignments, nor ``cases`` (which carries the reporter's name and
phone as given). Each engine process runs as its own principal with what its code reads and
writes (``ENGINE``); the operator's ``admin`` is the broker's super user (topics, ACLs,
credentials) and needs no ACL.

Names carry the environment's topic prefix, like the topics and groups themselves. The
result is a set, compared with the broker's by ``griddispatch acl diff|apply``
(``engine.runtime.acl_admin``), so a department removed from the registry loses its ACLs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Resource = Literal["topic", "group", "transactional_id", "cluster"]
Pattern = Literal["literal", "prefixed"]
Operation = Literal["read", "write", "describe", "idempotent_write"]

ADMIN = "admin"
BRIDGE = "griddispatch-bridge"


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule (any host): ``principal`` may ``operation`` the named resource."""

    principal: str  # a user name; the broker sees User:<principal>
    resource: Resource
    name: str
    pattern: Pattern
    operation: Operation

    def __str__(self) -> str:
        star = "*" if self.pattern == "prefixed" else ""
        return f"User:{self.principal} {self.operation} {self.resource} {self.name}{star}"


@dataclass(frozen=True)
class Grant:
    """What one engine principal may do, before the prefix is applied."""

    reads: tuple[str, ...] = ()  # topics, literal ("x.*" = prefix "x.")
    writes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()  # consumer groups, as prefixes
    transactional_ids: tuple[str, ...] = ()  # as prefixes


# What each engine process's code reads and writes (its principal is the key).
ENGINE: dict[str, Grant] = {
    "griddispatch-classify": Grant(
        reads=("incidents.reported",),
        writes=("incidents.classified", "incidents.triage", "incidents.rejected"),
        groups=("griddispatch-classify",)),
    "griddispatch-route": Grant(
        reads=("incidents.classified", "assignments.status", "cases"),
        writes=("assignments.*", "verdicts.*", "cases"),  # every department's, status.rejected
        groups=("griddispatch-route",), transactional_ids=("griddispatch-route-",)),
    "griddispatch-timers": Grant(
        reads=("cases", "escalations"),
        writes=("escalations", "escalations.*", "assignments.status"),
        groups=("griddispatch-timers",)),
    "griddispatch-intake": Grant(
        reads=("cases", "incidents.triage", "incidents.rejected", "incidents.reported",
               "triage.decisions"),
        writes=("incidents.reported", "intake.deadletter"),
        groups=("griddispatch-intake-readmodel",)),
    BRIDGE: Grant(
        writes=("incidents.reported", "intake.deadletter"), groups=("bridge.",)),
    "griddispatch-webhooks": Grant(
        reads=("assignments.*", "escalations.*", "webhooks.deadletter"),
        writes=("webhooks.deadletter",), groups=("webhooks",)),
    "griddispatch-console": Grant(
        reads=("incidents.triage", "triage.decisions", "cases", "escalations",
               "incidents.classified", "incidents.rejected", "assignments.status.rejected"),
        writes=("incidents.classified", "triage.decisions", "assignments.status"),
        groups=("griddispatch-console-",)),
}


def department_acls(department: str, prefix: str = "") -> list[Acl]:
    """A department's own topics, its own group, and the status topic to answer on."""
    acls = [Acl(department, "topic", f"{prefix}{topic}.{department}", "literal", operation)
            for topic in ("assignments", "escalations", "verdicts")
            for operation in ("read", "describe")]
    acls.append(Acl(department, "group", f"{prefix}dept-{department}", "literal", "read"))
    acls += [Acl(department, "topic", f"{prefix}assignments.status", "literal", operation)
             for operation in ("write", "describe")]
    return acls


def engine_acls(principal: str, grant: Grant, prefix: str = "") -> list[Acl]:
    def topic(name: str, operation: Operation) -> Acl:
        if name.endswith("*"):
            return Acl(principal, "topic", prefix + name[:-1], "prefixed", operation)
        return Acl(principal, "topic", prefix + name, "literal", operation)

    acls = [topic(t, op) for t in grant.reads for op in ("read", "describe")]
    acls += [topic(t, op) for t in grant.writes for op in ("write", "describe")]
    acls += [Acl(principal, "group", prefix + g, "prefixed", "read") for g in grant.groups]
    acls += [Acl(principal, "transactional_id", prefix + t, "prefixed", op)
             for t in grant.transactional_ids for op in ("write", "describe")]
    if grant.writes:  # idempotent producers (every producer of ours is one)
        acls.append(Acl(principal, "cluster", "kafka-cluster", "literal", "idempotent_write"))
    return acls


def bridge_source_acls(sources: Iterable[str]) -> list[Acl]:
    """The Kafka bridge reads each department system's own topic (named as on its cluster,
    never prefixed: it is not ours), as declared by ``source_topic`` in ``rules/bridges/``."""
    return [Acl(BRIDGE, "topic", source, "literal", operation)
            for source in sources for operation in ("read", "describe")]


def desired_acls(departments: Iterable[str], prefix: str = "",
                 bridge_sources: Iterable[str] = ()) -> set[Acl]:
    out: set[Acl] = set(bridge_source_acls(bridge_sources))
    for department in departments:
        out.update(department_acls(department, prefix))
    for principal, grant in ENGINE.items():
        out.update(engine_acls(principal, grant, prefix))
    return out


def managed_principals(departments: Iterable[str]) -> set[str]:
    """Principals whose ACLs ``acl apply`` owns: the engine's and every department's."""
    return set(departments) | set(ENGINE)


def changes(desired: set[Acl], present: set[Acl], managed: set[str],
            prefix: str = "") -> tuple[list[Acl], list[Acl]]:
    """(to create, to delete): ACLs of principals we do not manage are left alone, and so are
    those on names outside ``prefix``, which belong to another environment sharing the
    cluster under its own prefix (with no prefix, everything is ours)."""
    def ours(acl: Acl) -> bool:
        return acl.principal in managed and (not prefix or acl.name.startswith(prefix))

    return sorted(desired - present), sorted(a for a in present - desired if ours(a))
