"""ACLs as code (engine/topics/acls.py): what a department and each engine process may do."""

from __future__ import annotations

from pathlib import Path

from engine.topics.acls import (
    ENGINE,
    Acl,
    changes,
    department_acls,
    desired_acls,
    engine_acls,
    managed_principals,
)

REPO = Path(__file__).resolve().parents[2]

ZHZF = "330110005.zhzf"


def test_a_department_reads_its_own_topics_through_its_own_group_and_answers() -> None:
    acls = {str(a) for a in department_acls(ZHZF, "p.")}
    assert acls == {
        f"User:{ZHZF} read topic p.assignments.{ZHZF}",
        f"User:{ZHZF} describe topic p.assignments.{ZHZF}",
        f"User:{ZHZF} read topic p.escalations.{ZHZF}",
        f"User:{ZHZF} describe topic p.escalations.{ZHZF}",
        f"User:{ZHZF} read topic p.verdicts.{ZHZF}",
        f"User:{ZHZF} describe topic p.verdicts.{ZHZF}",
        f"User:{ZHZF} read group p.dept-{ZHZF}",
        f"User:{ZHZF} write topic p.assignments.status",
        f"User:{ZHZF} describe topic p.assignments.status"}


def test_no_department_may_read_cases_or_write_anything_but_status() -> None:
    for acl in desired_acls(["330110005.zhzf", "330110.scjg"]):
        if acl.principal in ENGINE:
            continue
        assert "cases" not in acl.name
        if acl.operation == "write":
            assert acl.name == "assignments.status"


def test_only_engine_principals_that_need_personal_data_read_cases() -> None:
    readers = {a.principal for a in desired_acls([]) if a.name == "cases"
               and a.operation == "read"}
    assert readers == {"griddispatch-route", "griddispatch-timers", "griddispatch-intake",
                       "griddispatch-console"}


def test_prefixed_grants_and_transactions_of_the_route_worker() -> None:
    acls = {str(a) for a in engine_acls("griddispatch-route", ENGINE["griddispatch-route"])}
    assert "User:griddispatch-route write topic assignments.*" in acls
    assert "User:griddispatch-route write transactional_id griddispatch-route-*" in acls
    assert "User:griddispatch-route idempotent_write cluster kafka-cluster" in acls


def test_changes_leave_unmanaged_principals_alone() -> None:
    desired = set(department_acls(ZHZF))
    stray = Acl(ZHZF, "topic", "cases", "literal", "read")
    foreign = Acl("someone-else", "topic", "cases", "literal", "read")
    missing = next(iter(desired))
    create, delete = changes(desired, (desired - {missing}) | {stray, foreign}, {ZHZF})
    assert (create, delete) == ([missing], [stray])


def test_another_environments_acls_under_its_own_prefix_are_left_alone() -> None:
    """Two environments on one cluster (prefixes ``test.`` and ``prod.``) share principals:
    applying one must not delete the other's grants."""
    test = desired_acls([ZHZF], "test.")
    prod = desired_acls([ZHZF], "prod.")
    create, delete = changes(test, prod, managed_principals([ZHZF]), "test.")
    assert set(create) == test - prod and delete == []
    # without a prefix everything on the cluster is this environment's
    _, delete = changes(set(), prod, managed_principals([ZHZF]))
    assert set(delete) == prod


def test_the_bridge_reads_each_declared_source_topic_as_named() -> None:
    from engine.runtime.acl_admin import bridge_sources

    sources = bridge_sources(REPO / "rules")
    assert sources == ["scjg.complaints.12315"]
    acls = {str(a) for a in desired_acls([], "p.", sources)}
    assert "User:griddispatch-bridge read topic scjg.complaints.12315" in acls  # not prefixed
    assert "User:griddispatch-bridge describe topic scjg.complaints.12315" in acls
