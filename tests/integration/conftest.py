"""Fixtures the integration tests share beyond those of tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from confluent_kafka.admin import NewTopic

from engine.cli.stack import process
from engine.reference.grid_shapes import inner_point
from engine.rules.load import load_rules
from engine.runtime import kafka
from engine.runtime.settings import Settings

# The real-browser fixtures, for every test here that drives chromium.
from tests.integration.browser import browser, page  # noqa: F401
from tests.integration.chaos import BRIDGE_SOURCE, WEBHOOK_SECRET, Client, Engine, Servers
from tests.integration.connector_helpers import Receiver
from tests.integration.workers import apply_topics
from tests.unit.rules_copy import rules_with_county_sla


@pytest.fixture
def intake_settings(kafka_settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """Kafka and Redis of the session, with the real topics under this test's prefix.

    Parametrize it indirectly with ``"cluster"`` for the session's Redis Cluster."""
    shape = getattr(request, "param", "single")
    redis_url = str(request.getfixturevalue(
        "redis_cluster_url" if shape == "cluster" else "redis_url"))
    settings = kafka_settings.with_(redis_url=redis_url)
    apply_topics(settings)
    return settings


# The chaos suite (test_faults.py, test_cluster_faults.py): limits in seconds, so that
# timers fire during the load.
POLICY = "sla:\n" + "".join(f"""  {name}:
    description: chaos test policy, limits in seconds so that timers fire during the load
    accept: 20s
    resolve: 1h
    unit: natural
    warn_at: [50]
    ladder:
      - {{after: 5s}}
""" for name in ("default", "urgent", "market", "enforcement", "services", "mediation"))


@pytest.fixture
def chaos(tmp_path: Path, mqtt_url: str, request: pytest.FixtureRequest
          ) -> tuple[Servers, Engine, Client, Receiver]:
    """Servers (one broker, or a 3-node cluster when the test is marked ``cluster``), the
    topics, and the engine and clients ready to start, all private to the test."""
    servers = Servers(tmp_path / "servers", cluster=request.node.get_closest_marker(
        "cluster") is not None)
    request.addfinalizer(servers.stop)
    rules = rules_with_county_sla(tmp_path, POLICY)
    settings = servers.settings(rules)
    apply_topics(settings)
    ruleset = load_rules(rules)
    places = [inner_point(g) for g in list(ruleset.jurisdiction.grids.values())[::7]
              if g.valid_to is None]
    devices = yaml.safe_load((rules / "reference" / "devices.yaml").read_text("utf-8"))
    gas = [d for d, spec in devices["devices"].items() if spec["type"] == "gas"]
    logs = tmp_path / "logs"
    logs.mkdir()
    engine = Engine(settings, rules, logs, process.free_port(), mqtt_url)
    request.addfinalizer(engine.stop_all)
    source = NewTopic(settings.topic(BRIDGE_SOURCE), 1, 3 if servers.cluster else 1)
    admin = kafka.admin_client(settings)  # kept until the futures resolve
    for future in admin.create_topics([source]).values():
        future.result(30)  # the department system's own topic, for the Kafka bridge
    client = Client(f"http://127.0.0.1:{engine.intake_port}", places, mqtt_url, gas, settings)
    return servers, engine, client, Receiver(WEBHOOK_SECRET.encode())
