"""The local stack: a real Kafka broker, Redis and Mosquitto (MQTT), started and stopped by us.

``up`` is idempotent (a running stack is left as it is), ``down`` leaves no process of ours
behind, and ``status`` reads the pid files and asks each server whether it answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.cli.stack import kafka_broker, mosquitto, process, prometheus, redis_server
from engine.cli.stack.process import StackError
from engine.runtime.settings import scram_security

__all__ = ["LocalStack", "ServerStatus", "StackError"]


@dataclass(frozen=True)
class ServerStatus:
    name: str
    port: int
    pid: int | None
    answering: bool

    @property
    def running(self) -> bool:
        return self.pid is not None


@dataclass
class StackPorts:
    kafka: int = kafka_broker.DEFAULT_PORT
    kafka_controller: int = kafka_broker.DEFAULT_PORT + 1
    redis: int = redis_server.DEFAULT_PORT
    mqtt: int = mosquitto.DEFAULT_PORT
    prometheus: int = prometheus.DEFAULT_PORT  # only with up(..., with_prometheus=True)


class LocalStack:
    """One stack's folder: config, data, logs and pid files of its broker, Redis, MQTT."""

    def __init__(self, home: Path):
        self.home = home
        self.kafka = kafka_broker.layout(home / "kafka")
        self.redis = redis_server.layout(home)
        self.mqtt = mosquitto.layout(home)
        self.prometheus = prometheus.layout(home)
        self._ports_file = home / "ports.json"

    @property
    def ports(self) -> StackPorts:
        try:
            return StackPorts(**json.loads(self._ports_file.read_text()))
        except (OSError, ValueError, TypeError):
            return StackPorts()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports.kafka}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports.redis}/0"

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.ports.mqtt}"

    @property
    def kafka_security(self) -> tuple[tuple[str, str], ...]:
        """The admin's client settings when the broker runs the secure profile, else ()."""
        saved = kafka_broker.saved_secrets(self.kafka)
        return scram_security("admin", saved.admin) if saved else ()

    def up(self, ports: StackPorts, persistent_redis: bool = True,
           with_prometheus: bool = False, secure: bool = False,
           scrape_targets: dict[str, str] | None = None) -> list[ServerStatus]:
        """Start whatever is not running yet; a server that already runs is kept as it is.

        Prometheus is optional (``with_prometheus``): it scrapes the workers' /metrics and
        evaluates ops/prometheus/alerts.yml; ``scrape_targets`` as in ``prometheus.start``.
        """
        self.home.mkdir(parents=True, exist_ok=True)
        running = self.ports
        if all(process.read_pid(pid_file) is None for pid_file in (
                self.kafka.pid_file, self.redis.pid_file, self.mqtt.pid_file)):
            running = ports
            self._ports_file.write_text(json.dumps(asdict(ports)) + "\n")
        servers: list[tuple[process.ServerFiles, Callable[[], object]]] = [
            (self.kafka, lambda: kafka_broker.start(
                self.kafka, running.kafka, running.kafka_controller,
                secure=kafka_broker.profile_secrets(self.kafka, secure))),
            (self.redis, lambda: redis_server.start(self.redis, running.redis,
                                                    persistent=persistent_redis)),
            (self.mqtt, lambda: mosquitto.start(self.mqtt, running.mqtt,
                                                persistent=persistent_redis)),
        ]
        if with_prometheus:
            servers.append((self.prometheus,
                            lambda: prometheus.start(self.prometheus, running.prometheus,
                                                     targets=scrape_targets)))
        for index, (files, start) in enumerate(servers):
            if process.read_pid(files.pid_file) is not None:
                continue
            try:
                start()
            except StackError:
                if index > 0:  # a broker that failed to start left nothing to stop
                    self.down()
                raise
        return self.status()

    def status(self) -> list[ServerStatus]:
        ports = self.ports
        kafka_pid = process.read_pid(self.kafka.pid_file)
        redis_pid = process.read_pid(self.redis.pid_file)
        mqtt_pid = process.read_pid(self.mqtt.pid_file)
        return [
            ServerStatus("kafka", ports.kafka, kafka_pid,
                         kafka_pid is not None and kafka_broker.answers(
                             ports.kafka, kafka_broker.saved_secrets(self.kafka))),
            ServerStatus("redis", ports.redis, redis_pid,
                         redis_pid is not None and redis_server.answers(ports.redis)),
            ServerStatus("mqtt", ports.mqtt, mqtt_pid,
                         mqtt_pid is not None and mosquitto.answers(ports.mqtt)),
            *self._prometheus_status(ports),
        ]

    def _prometheus_status(self, ports: StackPorts) -> list[ServerStatus]:
        """Optional, so listed only while it runs (``stack status`` needs all listed up)."""
        pid = process.read_pid(self.prometheus.pid_file)
        if pid is None:
            return []
        return [ServerStatus("prometheus", ports.prometheus, pid,
                             prometheus.answers(ports.prometheus))]

    def down(self) -> list[str]:
        """Stop every server; returns the names of those that were running."""
        stopped = []
        if process.stop(self.prometheus.pid_file, timeout=10):
            stopped.append("prometheus")
        if process.stop(self.mqtt.pid_file, timeout=10):
            stopped.append("mqtt")
        if process.stop(self.redis.pid_file, timeout=10):
            stopped.append("redis")
        if process.stop(self.kafka.pid_file, timeout=30):
            stopped.append("kafka")
        return stopped
