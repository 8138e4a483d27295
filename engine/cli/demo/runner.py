"""The demo's moving parts: a feed into every channel, and departments that answer.

Reports go in the way real channels send them: the 12345 hotline and the grid app through
their intake endpoints, Open311 clients with a form post and the development key, sensors
over MQTT, other systems through the JSON API. Departments read their assignment topics and
answer on ``assignments.status`` like ``griddispatch dept`` does; the command centres call
back resolved cases. Nothing here decides anything the engine decides.
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

from engine.cases.records import StatusUpdate
from engine.cli.demo.behaviour import Answer, lead_answers, verification
from engine.cli.demo.scenario import DemoFeed, DemoReport
from engine.reference.departments import DepartmentRegistry
from engine.runtime import kafka
from engine.runtime.settings import Settings

log = logging.getLogger("griddispatch.demo")


class Feed(threading.Thread):
    """Sends one report every ``interval`` seconds until stopped."""

    def __init__(self, feed: DemoFeed, intake_url: str, api_key: str, mqtt_url: str | None,
                 interval: float, stop: threading.Event) -> None:
        super().__init__(name="demo-feed", daemon=True)
        self.feed, self.intake, self.key = feed, intake_url.rstrip("/"), api_key
        self.mqtt_url, self.interval, self.stopping = mqtt_url, interval, stop
        self.sent: dict[str, int] = {}
        self.failed = 0
        self._mqtt: Any = None

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            report = self.feed.next(datetime.now(UTC))
            try:
                self.send(report)
                self.sent[report.channel] = self.sent.get(report.channel, 0) + 1
            except (OSError, RuntimeError) as exc:
                self.failed += 1
                log.warning("demo %s report not sent: %s", report.channel, exc)
        if self._mqtt is not None:
            self._mqtt.loop_stop()
            self._mqtt.disconnect()

    def send(self, report: DemoReport) -> None:
        if report.channel == "sensor":
            self._publish_alarm(report)
        elif report.channel == "open311":
            form = {**report.payload, "api_key": "dev-open311"}
            self._post("/open311/v2/requests.json", urllib.parse.urlencode(form).encode(),
                       "application/x-www-form-urlencoded", report.key)
        elif report.channel in ("hotline", "gridapp"):
            self._post(f"/api/v1/channels/{report.channel}",
                       json.dumps(report.payload, ensure_ascii=False).encode(),
                       "application/json")
        else:
            self._post("/api/v1/incidents", json.dumps(report.payload, ensure_ascii=False)
                       .encode(), "application/json")

    def _post(self, path: str, body: bytes, content_type: str,
              idempotency_key: str | None = None) -> None:
        headers = {"Content-Type": content_type, "X-API-Key": self.key}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        request = urllib.request.Request(f"{self.intake}{path}", data=body, method="POST",
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=15) as answer:
                answer.read()
        except urllib.error.HTTPError as exc:
            if exc.code >= 500 or exc.code in (401, 403, 429):
                raise RuntimeError(f"{path}: HTTP {exc.code} {exc.read()[:200]!r}") from exc
            # 4xx for a deliberately bad report is the expected answer

    def _publish_alarm(self, report: DemoReport) -> None:
        if self.mqtt_url is None:
            raise RuntimeError("no MQTT broker for sensor alarms")
        if self._mqtt is None:
            import paho.mqtt.client as mqtt
            from paho.mqtt.enums import CallbackAPIVersion

            url = urllib.parse.urlparse(self.mqtt_url)
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="griddispatch-demo")
            client.connect(url.hostname or "127.0.0.1", url.port or 1883)
            client.loop_start()
            self._mqtt = client
        info = self._mqtt.publish(f"griddispatch/sensors/{report.device}/alarm",
                                  json.dumps(report.payload, ensure_ascii=False), qos=1)
        info.wait_for_publish(10)


class Departments(threading.Thread):
    """Every department's inbox and the command centres' call-backs, answering on a delay."""

    def __init__(self, settings: Settings, departments: DepartmentRegistry,
                 stop: threading.Event) -> None:
        super().__init__(name="demo-departments", daemon=True)
        self.settings, self.departments, self.stopping = settings, departments, stop
        self.answered: dict[str, int] = {}
        self._due: list[tuple[float, int, str, StatusUpdate]] = []
        self._seq = 0
        self._verified: set[str] = set()

    def run(self) -> None:
        prefix = self.settings.topic_prefix.replace(".", r"\.")
        consumer = kafka.consumer(self.settings, "griddispatch-demo",  # prefixed there
                                  **{"enable.auto.commit": True,
                                     "auto.offset.reset": "latest"})
        consumer.subscribe([f"^{prefix}assignments\\.[0-9].*", self.settings.topic("cases")])
        producer = kafka.producer(self.settings)
        try:
            while not self.stopping.is_set():
                for message in consumer.consume(200, 0.5):
                    if message.error() is None and message.value():
                        self._on_record(str(message.topic()), json.loads(message.value()
                                                                         or b"{}"))
                self._answer_due(producer)
        finally:
            consumer.close()
            producer.flush(5)

    def _schedule(self, answer: Answer, case_id: str, department: str, key: str) -> None:
        update = StatusUpdate(case_id=case_id, department=department, action=answer.action,
                              at=datetime.now(UTC), note=answer.note,
                              satisfied=answer.satisfied)
        self._seq += 1
        heapq.heappush(self._due, (time.monotonic() + answer.delay_s, self._seq, key, update))

    def _on_record(self, topic: str, value: dict[str, Any]) -> None:
        if value.get("schema") == "griddispatch.assignment/1":
            if value.get("role") == "lead" and value.get("kind") in ("new", "reassigned"):
                for answer in lead_answers(value["case_id"], value["kind"]):
                    self._schedule(answer, value["case_id"], value["department"],
                                   value["partition_key"])
        elif value.get("schema") == "griddispatch.case/1" and value.get("state") == "resolved":
            case_id = value["case_id"]
            marker = f"{case_id}:{len(value.get('history') or ())}"
            if marker in self._verified:
                return
            self._verified.add(marker)
            centre = f"{value['partition_key'][:9]}.zhzx"
            if centre not in self.departments:
                centre = f"{value['partition_key'][:6]}.zhzx"
            self._schedule(verification(case_id), case_id, centre, value["partition_key"])

    def _answer_due(self, producer: Any) -> None:
        now = time.monotonic()
        while self._due and self._due[0][0] <= now:
            _, _, key, update = heapq.heappop(self._due)
            update = update.model_copy(update={"at": datetime.now(UTC)})
            producer.produce(self.settings.topic("assignments.status"),
                             update.model_dump_json(by_alias=True).encode(), key.encode())
            self.answered[update.action] = self.answered.get(update.action, 0) + 1
        producer.poll(0)
