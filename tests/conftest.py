"""Real Kafka and Redis for the tests, found or started once per session.

Order of preference for each service: the environment (KAFKA_BOOTSTRAP_SERVERS, REDIS_URL),
else testcontainers when a Docker engine answers, else the project's own local stack on free
ports in a temporary folder, stopped at the end. Each test gets its own topic prefix, so
tests never see each other's records.

The project's own broker runs the secure profile (SASL/SCRAM, ACLs enforced), as ``make
run`` does, and the tests act as its admin: the session's environment carries the admin's
``GRIDDISPATCH_KAFKA_*`` settings, so every worker a test starts finds them.
``GRIDDISPATCH_TEST_BROKER=plain`` runs the plain profile instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cli.stack import kafka_broker, process, redis_server
from engine.runtime.settings import KAFKA_ENV, Settings, kafka_extra_env, kafka_extra_from_env

REPO = Path(__file__).resolve().parents[1]


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10,
                              check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session", autouse=True)
def trained_classifier() -> None:
    """Train (or find in the model cache) the shipped rules' classifier once, before any
    test starts a worker process: workers started together would each train it.

    The cache (``engine.classifier.train.cache_folder``) is shared with ``make run`` on
    purpose: entries are named by a hash of everything they are trained from and written by
    atomic rename, so a test can neither see nor leave a wrong model."""
    from engine.rules.load import load_rules

    load_rules(REPO / "rules")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    if _docker_answers():
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    layout = kafka_broker.layout(tmp_path_factory.mktemp("kafka"))
    port = process.free_port()
    controller = process.free_port()
    secure = os.environ.get("GRIDDISPATCH_TEST_BROKER", "secure") != "plain"
    secrets = kafka_broker.Secrets.generate() if secure else None
    kafka_broker.start(layout, port, controller, secure=secrets)
    admin = secrets.admin_settings("") if secrets else Settings()
    saved = {k: v for k, v in os.environ.items() if k.startswith(KAFKA_ENV)}
    os.environ.update(kafka_extra_env(admin.kafka_extra))
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for key in [k for k in os.environ if k.startswith(KAFKA_ENV)]:
            del os.environ[key]
        os.environ.update(saved)
        process.stop(layout.pid_file)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    if _docker_answers():
        from testcontainers.community.redis import RedisContainer

        with RedisContainer() as container:
            host = container.get_container_host_ip()
            yield f"redis://{host}:{container.get_exposed_port(6379)}/0"
        return
    layout = redis_server.layout(tmp_path_factory.mktemp("redis"))
    port = process.free_port()
    redis_server.start(layout, port, persistent=False)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.stop(layout.pid_file)


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis Cluster of three primaries: $REDIS_CLUSTER_URL (``redis+cluster://…``), else our
    own on free ports in a temporary folder, stopped at the end."""
    if os.environ.get("REDIS_CLUSTER_URL"):
        yield os.environ["REDIS_CLUSTER_URL"]
        return
    from engine.cli.stack.redis_cluster import LocalRedisCluster

    cluster = LocalRedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture(params=["single", "cluster"])
def any_redis_url(request: pytest.FixtureRequest) -> str:
    """Each Redis shape griddispatch supports: one server, and a cluster."""
    name = "redis_url" if request.param == "single" else "redis_cluster_url"
    return str(request.getfixturevalue(name))


@pytest.fixture(scope="session")
def mqtt_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An MQTT broker: $MQTT_URL, else our own Mosquitto on a free port (no persistence)."""
    if os.environ.get("MQTT_URL"):
        yield os.environ["MQTT_URL"]
        return
    from engine.cli.stack import mosquitto

    layout = mosquitto.layout(tmp_path_factory.mktemp("mqtt"))
    port = process.free_port()
    mosquitto.start(layout, port, persistent=False)
    try:
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        process.stop(layout.pid_file)


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, topic_prefix: str) -> Settings:
    """The test broker as its admin (the session's ``GRIDDISPATCH_KAFKA_*``)."""
    return Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=topic_prefix,
                    rules_dir=REPO / "rules", topics_dir=REPO / "topics",
                    kafka_extra=kafka_extra_from_env(os.environ))
