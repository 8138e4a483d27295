"""The broker's side of ``engine.topics.acls``: read, create and delete ACLs, and store
principals' SCRAM credentials (the broker keeps only salted hashes of the password)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from engine.reference.departments import DepartmentRegistry
from engine.runtime import kafka
from engine.runtime.settings import Settings
from engine.topics.acls import (
    Acl,
    Operation,
    Pattern,
    Resource,
    changes,
    desired_acls,
    managed_principals,
)
from engine.yamlfile import load_yaml

_RESOURCES: dict[Resource, ResourceType] = {
    "topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
    "transactional_id": ResourceType.TRANSACTIONAL_ID, "cluster": ResourceType.BROKER}
_PATTERNS: dict[Pattern, ResourcePatternType] = {
    "literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
_OPERATIONS: dict[Operation, AclOperation] = {
    "read": AclOperation.READ, "write": AclOperation.WRITE,
    "describe": AclOperation.DESCRIBE, "idempotent_write": AclOperation.IDEMPOTENT_WRITE}
TIMEOUT = 30.0
SCRAM_ITERATIONS = 8192


def binding(acl: Acl) -> AclBinding:
    return AclBinding(_RESOURCES[acl.resource], acl.name, _PATTERNS[acl.pattern],
                      f"User:{acl.principal}", "*", _OPERATIONS[acl.operation],
                      AclPermissionType.ALLOW)


def present_acls(admin: AdminClient) -> set[Acl]:
    """Every ALLOW ACL on the broker that this module can express (others are ignored)."""
    # None matches any name, principal and host (the stubs say str; the API takes None).
    anything: Any = None
    wanted = AclBindingFilter(ResourceType.ANY, anything, ResourcePatternType.ANY, anything,
                              anything, AclOperation.ANY, AclPermissionType.ANY)
    found = admin.describe_acls(wanted, request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    resources = {v: k for k, v in _RESOURCES.items()}
    patterns = {v: k for k, v in _PATTERNS.items()}
    operations = {v: k for k, v in _OPERATIONS.items()}
    out = set()
    for b in found:
        if (b.permission_type != AclPermissionType.ALLOW or b.host != "*"
                or not b.principal.startswith("User:") or b.restype not in resources
                or b.resource_pattern_type not in patterns or b.operation not in operations):
            continue
        out.add(Acl(b.principal[len("User:"):], resources[b.restype], b.name,
                    patterns[b.resource_pattern_type], operations[b.operation]))
    return out


def create(admin: AdminClient, acls: Iterable[Acl]) -> None:
    bindings = [binding(a) for a in acls]
    if bindings:
        for future in admin.create_acls(bindings, request_timeout=TIMEOUT).values():
            future.result(timeout=TIMEOUT)


def delete(admin: AdminClient, acls: Iterable[Acl]) -> None:
    filters = [AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal,
                                b.host, b.operation, b.permission_type)
               for b in map(binding, acls)]
    if filters:
        for future in admin.delete_acls(filters, request_timeout=TIMEOUT).values():
            future.result(timeout=TIMEOUT)


def set_password(admin: AdminClient, principal: str, password: str | None = None) -> str:
    """Store SCRAM-SHA-512 credentials for ``principal``; returns the password (a new random
    one unless given). The broker stores a salted hash, never the password."""
    return set_passwords(admin, [principal], {principal: password} if password else {})[
        principal]


def set_passwords(admin: AdminClient, principals: Iterable[str],
                  given: Mapping[str, str] | None = None) -> dict[str, str]:
    """``set_password`` for many principals in one request (a county has a hundred
    departments): the passwords by principal, new random ones where none is given."""
    passwords = {p: (given or {}).get(p) or secrets.token_urlsafe(24) for p in principals}
    upserts: list[UserScramCredentialAlteration] = [UserScramCredentialUpsertion(
        principal, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
        password.encode()) for principal, password in passwords.items()]
    if not upserts:
        return passwords
    for principal, future in admin.alter_user_scram_credentials(
            upserts, request_timeout=TIMEOUT).items():
        try:
            future.result(timeout=TIMEOUT)
        except KafkaException as exc:
            raise KafkaException(f"storing credentials for {principal}: {exc}") from None
    return passwords


def bridge_sources(rules_dir: Path) -> list[str]:
    """The ``source_topic`` of each bridge mapping in ``rules/bridges/`` (its only key read
    here; ``connect kafka`` checks the whole file)."""
    sources = []
    for path in sorted((rules_dir / "bridges").glob("*.yaml")):
        data = load_yaml(path).data
        source = data.get("source_topic") if isinstance(data, dict) else None
        if isinstance(source, str) and source:
            sources.append(source)
    return sources


def plan(settings: Settings, admin: AdminClient | None = None) -> tuple[list[Acl], list[Acl]]:
    """(to create, to delete) for the broker to match the department registry and the
    bridge mappings of ``settings.rules_dir`` (``engine.topics.acls``)."""
    codes = [d.code for d in DepartmentRegistry.load(
        settings.rules_dir / "reference" / "departments.yaml")]
    return changes(desired_acls(codes, settings.topic_prefix,
                                bridge_sources(settings.rules_dir)),
                   present_acls(admin or kafka.admin_client(settings)),
                   managed_principals(codes), settings.topic_prefix)


def apply_plan(settings: Settings, settle: float = 120.0) -> tuple[list[Acl], list[Acl]]:
    """Make the broker match the registry; returns what was created and deleted.

    Returns only once the broker enforces them: the controller acknowledges CreateAcls when
    the records are in its log, but a broker applies them from its metadata image, which may
    lag seconds behind (measured: about 5 s after the 430 topics of a county were created).
    A process started in that gap as its own principal would be refused."""
    admin = kafka.admin_client(settings)
    to_create, to_delete = plan(settings, admin)
    create(admin, to_create)
    delete(admin, to_delete)
    deadline = time.monotonic() + settle
    while (to_create or to_delete) and plan(settings, admin) != ([], []):
        if time.monotonic() > deadline:
            raise kafka.KafkaUnavailable(f"the broker does not show the ACLs {settle:.0f}s after "
                                 "they were created; run 'griddispatch acl diff' to see which")
        time.sleep(0.5)
    return to_create, to_delete
