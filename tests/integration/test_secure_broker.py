"""The secure broker profile: SASL/SCRAM and ACLs generated from the department registry.

A private broker in the secure profile (its own ports and folder). The admin applies the
topics and ``acl apply``; each department then reads its own assignments through its own
group and answers on ``assignments.status``, and is refused another department's topic,
``cases`` (the reporter's personal data) and every write but its answers. The route worker
runs as its own engine principal with the generated ACLs: a classified report reaches the
lead department's topic.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from engine.classify import classify_data
from engine.cli.stack import kafka_broker, process
from engine.contracts import Classified, to_json
from engine.rules.load import load_rules
from engine.runtime import acl_admin, kafka
from engine.runtime.settings import KAFKA_ENV, Settings, kafka_extra_env, scram_security
from engine.topics.acls import Acl, changes, desired_acls, managed_principals
from tests.integration.workers import REPO, apply_topics, running, wait_for

pytestmark = pytest.mark.integration

ZHZF, SCJG = "330110005.zhzf", "330110009.scjg"


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings,
                                                                      kafka_broker.Secrets]]:
    home = tmp_path_factory.mktemp("secure-kafka")
    layout = kafka_broker.layout(home)
    secrets = kafka_broker.Secrets.generate()
    port = process.free_port()
    kafka_broker.start(layout, port, process.free_port(), secure=secrets)
    try:
        admin = secrets.admin_settings(f"127.0.0.1:{port}").with_(
            topic_prefix=f"s{uuid.uuid4().hex[:6]}.")
        apply_topics(admin)
        yield admin, secrets
    finally:
        process.stop(layout.pid_file)


def as_user(admin: Settings, user: str, password: str) -> Settings:
    return Settings(kafka_bootstrap=admin.kafka_bootstrap, topic_prefix=admin.topic_prefix,
                    kafka_extra=scram_security(user, password))


def principal(admin: Settings, name: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The ACLs applied, ``name`` given a fresh password, and the processes this test starts
    set to run as it."""
    assert cli(admin, "acl", "apply").returncode == 0
    made = cli(admin, "acl", "password", name)
    assert made.returncode == 0, made.stderr
    settings = as_user(admin, name, made.stdout.strip())
    for key, value in kafka_extra_env(settings.kafka_extra).items():
        monkeypatch.setenv(key, value)
    return settings


def departments() -> list[str]:
    return [d.code for d in load_rules(REPO / "rules", with_model=False).departments]


def cli(admin: Settings, *argv: str) -> subprocess.CompletedProcess[str]:
    env = kafka_extra_env(admin.kafka_extra)
    return subprocess.run(
        [sys.executable, "-m", "engine", "--bootstrap", admin.kafka_bootstrap,
         "--topic-prefix", admin.topic_prefix, *argv], cwd=REPO, capture_output=True,
        text=True, timeout=120, env={**_environ(), **env}, check=False)


def _environ() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(KAFKA_ENV)}


def read_one(settings: Settings, topic: str, group: str, subscribe: bool = True,
             timeout: float = 20) -> bytes | KafkaError:
    """The first record of ``topic`` through ``group`` (subscribed, or partition 0 assigned),
    or the error met."""
    consumer = kafka.consumer(settings, group)
    try:
        if subscribe:
            consumer.subscribe([settings.topic(topic)])
        else:
            consumer.assign([TopicPartition(settings.topic(topic), 0)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() != KafkaError._PARTITION_EOF:
                    return message.error()
                continue
            return message.value() or b""
        raise AssertionError(f"nothing on {topic} in {timeout:.0f}s")
    finally:
        consumer.close()


def write(settings: Settings, topic: str, value: bytes) -> KafkaError | None:
    errors: list[KafkaError] = []
    producer = kafka.producer(settings)
    producer.produce(settings.topic(topic), value=value, key=b"k",
                     on_delivery=lambda err, _msg: errors.append(err) if err else None)
    producer.flush(30)
    return errors[0] if errors else None


def test_acl_diff_then_apply_makes_the_broker_match_the_registry(
        secure: tuple[Settings, kafka_broker.Secrets]) -> None:
    admin, _ = secure
    before = cli(admin, "acl", "diff")
    assert before.returncode == 1 and f"+ User:{ZHZF} read topic " \
        f"{admin.topic_prefix}assignments.{ZHZF}" in before.stdout
    applied = cli(admin, "acl", "apply")
    assert applied.returncode == 0, applied.stderr
    after = cli(admin, "acl", "diff")
    assert after.returncode == 0 and "no changes" in after.stdout
    # an ACL of a principal we manage that the registry does not grant is removed
    acl_admin.create(kafka.admin_client(admin), [
        Acl(ZHZF, "topic", f"{admin.topic_prefix}cases", "literal", "read")])
    assert "- User:" in cli(admin, "acl", "diff").stdout
    assert cli(admin, "acl", "apply").returncode == 0
    assert acl_admin.plan(admin.with_(rules_dir=REPO / "rules")) == ([], [])
    # and the broker holds exactly the registry's grants plus the bridges' source topics
    codes = departments()
    assert changes(desired_acls(codes, admin.topic_prefix, ["scjg.complaints.12315"]),
                   acl_admin.present_acls(kafka.admin_client(admin)),
                   managed_principals(codes)) == ([], [])


def test_a_department_reads_only_its_own_work_and_answers_on_status(
        secure: tuple[Settings, kafka_broker.Secrets]) -> None:
    admin, _ = secure
    assert cli(admin, "acl", "apply").returncode == 0
    made = cli(admin, "acl", "password", ZHZF)
    assert made.returncode == 0, made.stderr
    zhzf = as_user(admin, ZHZF, made.stdout.strip())
    for topic in (f"assignments.{ZHZF}", f"assignments.{SCJG}", "cases"):
        assert write(admin, topic, json.dumps({"topic": topic}).encode()) is None

    own = read_one(zhzf, f"assignments.{ZHZF}", group=f"dept-{ZHZF}")
    assert own == json.dumps({"topic": f"assignments.{ZHZF}"}).encode()
    for refused in (f"assignments.{SCJG}", "cases"):  # even through its own group
        error = read_one(zhzf, refused, f"dept-{ZHZF}", subscribe=False)
        assert isinstance(error, KafkaError), refused
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (refused, error)
    # its own topic through another group: refused too (the group is part of the grant)
    other_group = read_one(zhzf, f"assignments.{ZHZF}", group="someone-elses-group")
    assert isinstance(other_group, KafkaError)
    assert other_group.code() == KafkaError.GROUP_AUTHORIZATION_FAILED

    assert write(zhzf, "assignments.status", b'{"answer": 1}') is None
    for refused in ("cases", f"assignments.{SCJG}", "incidents.reported"):
        error = write(zhzf, refused, b"{}")
        assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    # the department's own CLI, with its own credentials
    env = {**_environ(), **kafka_extra_env(zhzf.kafka_extra)}
    answered = subprocess.run(
        [sys.executable, "-m", "engine", "--bootstrap", admin.kafka_bootstrap, "--topic-prefix",
         admin.topic_prefix, "dept", "accept", "330110005-0123456789ab", "--dept", ZHZF,
         "--no-wait"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        check=False)
    assert answered.returncode == 0, answered.stdout + answered.stderr

    wrong = as_user(admin, ZHZF, "not-the-password")
    with pytest.raises(KafkaException):
        kafka.admin_client(wrong).list_topics(timeout=10)


def test_the_route_worker_runs_as_its_own_principal(
        secure: tuple[Settings, kafka_broker.Secrets], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    admin, _ = secure
    route = principal(admin, "griddispatch-route", monkeypatch)
    ruleset = load_rules(REPO / "rules")
    record = classify_data(ruleset, {
        "channel": "hotline", "channel_id": f"SEC-{uuid.uuid4().hex[:6]}",
        "reported_at": datetime.now(UTC).isoformat(), "description": "楼道里一股煤气味",
        "address": "五常街道"}, datetime.now(UTC))
    assert isinstance(record, Classified)
    with running(route, "route", tmp_path / "route.log"):
        producer = kafka.producer(admin)
        producer.produce(admin.topic("incidents.classified"), to_json(record),
                         record.division_chain[3][:9].encode())
        assert producer.flush(30) == 0
        wait_for(lambda: any(record.incident_id in case.get("incident_ids", [])
                             for case in cases(admin)), 90,
                 "the case the route worker wrote under its own principal")
        # The lead department accepts with its own credentials and waits for the verdict,
        # which it can read only on its own verdicts topic (not cases, not status.rejected).
        (case,) = [c for c in cases(admin) if record.incident_id in c.get("incident_ids", [])]
        lead = str(case["lead"])
        assert cli(admin, "acl", "apply").returncode == 0
        made = cli(admin, "acl", "password", lead)
        assert made.returncode == 0, made.stderr
        env = {**_environ(), **kafka_extra_env(as_user(admin, lead, made.stdout.strip())
                                               .kafka_extra)}
        def accept() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "engine", "--bootstrap", admin.kafka_bootstrap,
                 "--topic-prefix", admin.topic_prefix, "dept", "accept", str(case["case_id"]),
                 "--dept", lead, "--wait", "60"], cwd=REPO, env=env, capture_output=True,
                text=True, timeout=120, check=False)

        first, again = accept(), accept()
        assert first.returncode == 0, first.stdout + first.stderr
        assert "applied: accepted" in first.stdout and "the case is now accepted" in first.stdout
        assert again.returncode == 2, again.stdout + again.stderr  # refused, with the reason
        assert "refused: accepted" in again.stderr and "illegal_transition" in again.stderr


def cases(admin: Settings) -> list[dict[str, object]]:
    """Every record on ``cases`` so far, read as the admin."""
    consumer = kafka.consumer(admin, f"x-{uuid.uuid4().hex[:6]}", **{
        "enable.partition.eof": True})
    try:
        topic = admin.topic("cases")
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        out, ended, deadline = [], 0, time.monotonic() + 10
        while ended < len(partitions) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                ended += message.error().code() == KafkaError._PARTITION_EOF
                continue
            out.append(json.loads(message.value() or b"null"))
        return [c for c in out if isinstance(c, dict)]
    finally:
        consumer.close()


def test_a_secure_stack_is_used_by_every_command_without_setup(tmp_path: Path) -> None:
    """``stack up --secure``: the admin's password kept with the stack (0600) and read by
    every command run against it; a client without credentials is refused; the profile
    sticks to the storage (a restart without --secure is still secure)."""
    from engine.cli.stack import LocalStack, StackPorts

    home = tmp_path / "stack"
    stack = LocalStack(home)
    ports = StackPorts(kafka=process.free_port(), kafka_controller=process.free_port(),
                       redis=process.free_port(), mqtt=process.free_port())
    try:
        assert all(s.answering for s in stack.up(ports, secure=True))
        secrets = home / "kafka" / "secrets.json"
        assert secrets.stat().st_mode & 0o777 == 0o600
        env = {**_environ(), "GRIDDISPATCH_STACK_DIR": str(home)}
        env.pop("KAFKA_BOOTSTRAP_SERVERS", None)

        def griddispatch(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "engine", *argv], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=120, check=False)

        assert griddispatch("topics", "apply").returncode == 0
        assert griddispatch("acl", "diff").returncode == 1
        assert griddispatch("acl", "apply").returncode == 0
        assert griddispatch("acl", "diff").returncode == 0
        plain = Settings(kafka_bootstrap=stack.bootstrap)
        with pytest.raises(KafkaException):
            kafka.admin_client(plain).list_topics(timeout=10)
        stack.down()
        assert all(s.answering for s in stack.up(ports))  # no --secure: still secure
        assert griddispatch("acl", "diff").returncode == 0
    finally:
        stack.down()


def test_the_webhooks_worker_delivers_as_its_own_principal(
        secure: tuple[Settings, kafka_broker.Secrets], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The webhooks worker's grant: it reads the departments' topics through its groups and
    delivers, and no ACL refuses it."""
    from tests.integration.connector_helpers import Receiver

    admin, _ = secure
    webhooks = principal(admin, "griddispatch-webhooks", monkeypatch)
    body = json.dumps({"schema": "griddispatch.assignment/1", "department": ZHZF,
                       "case_id": f"330110005-{uuid.uuid4().hex[:12]}"}).encode()
    assert write(admin, f"escalations.{ZHZF}", body) is None
    secret = "webhook-secure-secret-0123456789"
    with Receiver(secret.encode()) as receiver:
        config = tmp_path / "webhooks.yaml"
        config.write_text(f'departments:\n  {ZHZF}: {{url: "{receiver.url}/zhzf", '
                          f'secret: "{secret}"}}\n', encoding="utf-8")
        log = tmp_path / "webhooks.log"
        with running(webhooks, "webhooks", log, "--config", str(config)):
            wait_for(lambda: body in receiver.effects.values(), 60,
                     "the escalation delivered under the webhooks principal")
        assert "AUTHORIZATION" not in log.read_text(errors="replace").upper()


def test_the_console_answers_as_each_department_with_its_own_credentials(
        secure: tuple[Settings, kafka_broker.Secrets], tmp_path: Path) -> None:
    """``acl password --departments FILE`` gives every department a password; the console's
    senders send a department's answer as that department, and only with its password."""
    from connectors.console.senders import Senders
    from engine.runtime import department_credentials
    from engine.runtime.kafka import KafkaUnavailable
    from engine.runtime.producer import AckedProducer

    admin, _ = secure
    assert cli(admin, "acl", "apply").returncode == 0
    path = tmp_path / "department-credentials.yaml"
    made = cli(admin, "acl", "password", "--departments", str(path))
    assert made.returncode == 0, made.stderr
    assert path.stat().st_mode & 0o777 == 0o600
    passwords = department_credentials.load(path)
    assert set(passwords) == set(departments())
    console = cli(admin, "acl", "password", "griddispatch-console")
    own = AckedProducer(as_user(admin, "griddispatch-console", console.stdout.strip()))
    senders = Senders(own.settings, own, passwords)
    topic = admin.topic("assignments.status")
    try:
        zhzf = senders.for_department(ZHZF)
        assert zhzf is not own and zhzf.settings.kafka_extra != own.settings.kafka_extra
        assert dict(zhzf.settings.kafka_extra)["sasl.username"] == ZHZF
        zhzf.send(topic, "330110005", b'{"answer": "as zhzf"}')  # the broker takes it
        assert senders.for_department(ZHZF) is zhzf  # one producer per department
        with pytest.raises(KafkaUnavailable):  # its ACLs allow nothing but its own answers
            zhzf.send(admin.topic("triage.decisions"), "x", b"{}")
        wrong = Senders(own.settings, own, {SCJG: "not-the-password"}).for_department(SCJG)
        try:
            with pytest.raises(KafkaUnavailable):
                wrong.send(topic, "330110009", b"{}")
        finally:
            wrong.close()
        missing = Senders(own.settings, own, {})
        with pytest.raises(KafkaUnavailable, match=f"no broker credentials for {ZHZF}"):
            missing.for_department(ZHZF)
    finally:
        senders.close()
