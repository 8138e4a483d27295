"""The chaos suite's parts (``test_faults.py``): the servers and engine it hurts, the clients
that load it, and the count at the end.

Every client counts what the engine *accepted*: an Open311 request answered 201 (503s and
refused connections are retried, as a real client does), a sensor alarm the MQTT broker
acknowledged (PUBACK, QoS 1: from then on the bridge's persistent session owns it). The
count reads the topics back as the admin and matches by incident id, case id, escalation id
and webhook delivery id.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from confluent_kafka import KafkaError
from paho.mqtt.enums import CallbackAPIVersion

from engine.cli.stack import kafka_broker, kafka_cluster, process, redis_server
from engine.contracts import incident_id
from engine.runtime import kafka
from engine.runtime.settings import KAFKA_ENV, Settings
from tests.integration.connector_helpers import Receiver
from tests.integration.workers import REPO, stop

KEY = uuid.uuid4().hex
WEBHOOK_SECRET = "chaos-webhook-secret-0123456789"
RATE = 8.0  # Open311 requests per second offered
SENSOR_EVERY = 4  # one sensor alarm, and one department system record, for every 4 requests
BRIDGE_MAPPING = REPO / "rules" / "bridges" / "scjg-complaints.yaml"
BRIDGE_SOURCE = "scjg.complaints"  # the department system's topic (prefixed: the test's own)
CST = timezone(timedelta(hours=8))


class Servers:
    """A private broker (one, or a local 3-node cluster) and Redis, which a test may stop and
    start again."""

    def __init__(self, home: Path, cluster: bool = False) -> None:
        self.cluster = kafka_cluster.LocalCluster(home / "cluster") if cluster else None
        self.broker = kafka_broker.layout(home / "kafka")
        self.kafka_port, self.controller = process.free_port(), process.free_port()
        self.redis = redis_server.layout(home)
        self.redis_port = process.free_port()
        if self.cluster is not None:
            self.cluster.start()
        else:
            self.start_broker()
        self.start_redis()

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap if self.cluster else f"127.0.0.1:{self.kafka_port}"

    def start_broker(self) -> None:
        kafka_broker.start(self.broker, self.kafka_port, self.controller)

    def stop_broker(self) -> None:
        process.stop(self.broker.pid_file, timeout=30)

    def start_redis(self) -> None:
        redis_server.start(self.redis, self.redis_port, persistent=False)

    def stop_redis(self) -> None:
        process.stop(self.redis.pid_file)

    def settings(self, rules: Path) -> Settings:
        """Settings for them, with a topic prefix of their own and ``rules``."""
        return Settings(kafka_bootstrap=self.bootstrap,
                        redis_url=f"redis://127.0.0.1:{self.redis_port}/0",
                        topic_prefix=f"f{uuid.uuid4().hex[:6]}.", rules_dir=rules,
                        topics_dir=REPO / "topics")

    def stop(self) -> None:
        self.stop_redis()
        if self.cluster is not None:
            self.cluster.stop()
        else:
            process.stop(self.broker.pid_file)


@dataclass
class Engine:
    """The engine's processes, each restartable; what the faults did, counted."""

    settings: Settings
    rules: Path
    logs: Path
    intake_port: int
    mqtt_url: str
    webhooks: Path | None = None  # the webhooks worker's config, once written
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(KAFKA_ENV)}
        self.env["REDIS_URL"] = self.settings.redis_url
        self.bridge_id = f"chaos-bridge-{uuid.uuid4().hex[:6]}"  # one persistent session
        # A key without the development key's 120 a minute: the load is not rate limited.
        (self.logs / "keys.yaml").write_text(json.dumps({"keys": [{
            "name": "chaos", "sha256": hashlib.sha256(KEY.encode()).hexdigest(),
            "channels": ["open311"], "rate_per_minute": 1_000_000}]}), encoding="utf-8")

    def argv(self, kind: str) -> list[str]:
        base = [sys.executable, "-m", "engine", "--bootstrap", self.settings.kafka_bootstrap,
                "--redis", self.settings.redis_url, "--topic-prefix", self.settings.topic_prefix]
        rules = ["--rules-dir", str(self.rules)]
        if kind == "intake":
            return [*base, "intake", "--port", str(self.intake_port), *rules, "--keys",
                    str(self.logs / "keys.yaml")]
        if kind == "mqtt":
            return [*base, "connect", "mqtt", "--url", self.mqtt_url, "--client-id",
                    self.bridge_id, *rules, "--metrics-port", "0"]
        if kind == "kafka-bridge":
            return [*base, "connect", "kafka", "--mapping", str(BRIDGE_MAPPING), "--source",
                    self.settings.topic(BRIDGE_SOURCE), "--metrics-port", "0"]
        if kind == "webhooks":
            return [*base, "worker", "webhooks", "--config", str(self.webhooks), *rules,
                    "--metrics-port", "0"]
        return [*base, "worker", kind, *rules, "--metrics-port", "0"]

    def start(self, kind: str) -> None:
        with (self.logs / f"{kind}.log").open("ab") as out:
            self.procs[kind] = subprocess.Popen(self.argv(kind), cwd=REPO, env=self.env,
                                                stdout=out, stderr=subprocess.STDOUT)

    def kill(self, kind: str) -> None:
        self.procs[kind].send_signal(signal.SIGKILL)
        self.procs[kind].wait(10)
        self.faults[f"kill -9 {kind}"] += 1
        self.start(kind)

    def revive(self) -> None:
        """A process that gave up (a broker gone too long) is started again, and counted."""
        for kind, proc in list(self.procs.items()):
            if proc.poll() is not None:
                self.faults[f"{kind} exited and was restarted"] += 1
                self.start(kind)

    def stop_all(self) -> None:
        for kind, proc in self.procs.items():
            stop(proc, self.logs / f"{kind}.log")


def webhooks_config(path: Path, receiver: Receiver, departments: list[str]) -> Path:
    """Webhooks for ``departments``, quick retries: a killed worker's records are re-sent."""
    lines = [f'  {code}: {{url: "{receiver.url}/{code}", secret: "{WEBHOOK_SECRET}", '
             'topics: [assignments]}' for code in departments]
    path.write_text("defaults:\n  timeout: 5\n  attempts: 20\n"
                    "  backoff: {first: 0.2, factor: 2, max: 2, jitter: 0.5}\n"
                    "departments:\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


class Client:
    """Open311 requests at a steady rate (a 503 or a refused connection is retried), and for
    every SENSOR_EVERY of them one sensor alarm over MQTT and one record of a department's
    own system on its Kafka topic (the Kafka bridge's source)."""

    def __init__(self, url: str, places: list[tuple[float, float]], mqtt_url: str,
                 devices: list[str], settings: Settings) -> None:
        self.url, self.places, self.devices = url, places, devices
        self.department_system = kafka.producer(settings)
        self.source = settings.topic(BRIDGE_SOURCE)
        self.accepted: list[str] = []  # incident ids
        self.retried = self.retried_then_accepted = self.gave_up = 0
        self.alarms_acknowledged = self.records_acknowledged = 0
        self.sent = 0  # requests of earlier runs: numbers (and idempotency keys) go on
        self.other: Counter[str] = Counter()
        self.mqtt = urlsplit(mqtt_url)
        self.sensor = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"chaos-sensors-{uuid.uuid4().hex[:6]}")

    def __enter__(self) -> Client:
        """The sensors' MQTT session, for every ``run``."""
        self.sensor.connect(self.mqtt.hostname or "127.0.0.1", self.mqtt.port or 1883)
        self.sensor.loop_start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sensor.disconnect()
        self.sensor.loop_stop()

    def post(self, n: int) -> None:
        lat, lon = random.choice(self.places)
        body = urllib.parse.urlencode({
            "api_key": KEY, "service_code": "streetlight", "lat": str(lat),
            "long": str(lon), "description": f"路灯不亮 第{n}号 {uuid.uuid4().hex[:8]}"}).encode()
        retried = False
        for attempt in range(60):
            try:
                request = urllib.request.Request(f"{self.url}/open311/v2/requests.json",
                                                 data=body, method="POST", headers={
                                                     "Idempotency-Key": f"chaos-{n}"})
                with urllib.request.urlopen(request, timeout=15) as answer:
                    self.accepted.append(json.loads(answer.read())[0]["service_request_id"])
                    self.retried_then_accepted += retried
                    return
            except urllib.error.HTTPError as exc:
                if exc.code != 503:
                    self.other[str(exc.code)] += 1
                    return
            except (urllib.error.URLError, OSError):
                pass
            retried = True
            self.retried += attempt == 0
            time.sleep(min(0.2 * 2 ** attempt, 2.0))
        self.gave_up += 1

    def alarm(self, n: int) -> None:
        """A gas alarm, accepted once Mosquitto acknowledges it (QoS 1)."""
        device, alarm_id = self.devices[n % len(self.devices)], f"CHAOS-{KEY[:6]}-{n}"
        payload = json.dumps({"alarm_id": alarm_id, "time": datetime.now(UTC).isoformat(),
                              "value": 25, "unit": "%LEL", "threshold": 20}).encode()
        sent = self.sensor.publish(f"griddispatch/sensors/{device}/alarm", payload, qos=1)
        sent.wait_for_publish(15)
        if sent.is_published():
            self.accepted.append(incident_id("sensor", f"{device}:{alarm_id}"))
            self.alarms_acknowledged += 1
        else:
            self.other["alarm not acknowledged by MQTT"] += 1

    def complaint(self, n: int) -> None:
        """A 12315 complaint record, accepted once the department's broker has it."""
        number = f"YH-{KEY[:6]}-{n}"
        record = {"gdbh": number, "slsj": datetime.now(CST).strftime("%Y-%m-%d %H:%M:%S"),
                  "wtxl": "餐饮服务", "tsbt": "饭店后厨卫生差", "tsnr": f"后厨老鼠乱窜 第{n}起",
                  "bjdz": "余杭区五常街道五常大道181号", "zb": {"jd": 120.0176, "wd": 30.3378}}
        delivered: list[KafkaError | None] = []
        self.department_system.produce(
            self.source, json.dumps(record, ensure_ascii=False).encode(), number.encode(),
            on_delivery=lambda error, _message: delivered.append(error))
        self.department_system.flush(30)
        if delivered == [None]:
            self.accepted.append(incident_id("dept:330110.scjg", number))
            self.records_acknowledged += 1
        else:
            self.other[f"record not acknowledged by Kafka: {delivered}"] += 1

    def run(self, until: float) -> None:
        n, gap = 0, 1.0 / RATE
        threads: list[threading.Thread] = []
        while time.monotonic() < until:
            extra = (self.alarm, self.complaint) if n % SENSOR_EVERY == 0 else ()
            for target in (self.post, *extra):
                thread = threading.Thread(target=target, args=(self.sent + n,), daemon=True)
                thread.start()
                threads.append(thread)
            n += 1
            time.sleep(gap)
        self.sent += n
        for thread in threads:
            thread.join(180)
