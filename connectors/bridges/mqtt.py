"""``griddispatch connect mqtt``: sensor alarms from an MQTT broker onto the one intake.

Subscribes ``griddispatch/sensors/+/alarm`` at QoS 1 with a persistent session
(clean session off, a stable client id), so alarms published while the bridge is down wait
in the broker. Each message is mapped by ``connectors.channels.sensors`` and submitted through
``IntakePublisher``; only then is the PUBACK sent (paho's ``manual_ack``). A message the
bridge could not finish (Kafka down, a crash) is therefore redelivered by the broker, and
the intake's (channel, channel id) dedup turns the redelivery into ``duplicate``: one alarm,
one record on ``incidents.reported``. What cannot be mapped goes to ``intake.deadletter``
and is acknowledged: bad input is recorded, never retried forever, never a crash.

paho's network thread only queues messages; one worker thread (the caller's) maps, submits
and acks them in arrival order, so a slow broker ack never blocks MQTT keep-alives.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from connectors.bridges.intake_loop import BridgeIntake
from connectors.channels.sensors import (
    TOPIC_FILTER,
    DeviceRegistry,
    alarm_to_report,
    device_from_topic,
)
from connectors.deadletter import IntakeDeadLetters
from connectors.intake.publish import IntakePublisher
from engine.runtime import metrics

log = logging.getLogger("griddispatch.mqtt")
CONNECTOR = "mqtt"


@dataclass(frozen=True)
class MqttTarget:
    """Where the broker is, from ``mqtt://[user:password@]host[:port]`` (``mqtts://`` = TLS)."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> MqttTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"'{url}' is not an MQTT URL; write mqtt://host:1883 or "
                             "mqtts://host:8883")
        tls = parts.scheme == "mqtts"
        return cls(parts.hostname, parts.port or (8883 if tls else 1883), tls,
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None)


class MqttBridge:
    def __init__(self, target: MqttTarget, client_id: str, registry: DeviceRegistry,
                 publisher: IntakePublisher, dead_letters: IntakeDeadLetters,
                 share_group: str | None = None, retry_seconds: float = 2.0) -> None:
        self.registry = registry
        self.stop = threading.Event()
        self.intake = BridgeIntake(CONNECTOR, publisher, dead_letters, self.stop, retry_seconds)
        self.subscription = (f"$share/{share_group}/{TOPIC_FILTER}" if share_group
                             else TOPIC_FILTER)
        self._inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=False, protocol=mqtt.MQTTv311, manual_ack=True)
        if target.username:
            self.client.username_pw_set(target.username, target.password)
        if target.tls:
            self.client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.target = target
        metrics.CONNECTOR_CONNECTED.labels(CONNECTOR).set(0)

    # --- paho's network thread -------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, properties: Any) -> None:
        if reason.is_failure:
            log.error("MQTT broker %s:%s refused the connection: %s", self.target.host,
                      self.target.port, reason)
            return
        log.info("connected to %s:%s (session present: %s); subscribing %s", self.target.host,
                 self.target.port, flags.session_present, self.subscription)
        client.subscribe(self.subscription, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reasons: list[ReasonCode], properties: Any) -> None:
        if any(r.is_failure for r in reasons):
            log.error("the broker refused the subscription %s: %s", self.subscription, reasons)
            return
        metrics.CONNECTOR_CONNECTED.labels(CONNECTOR).set(1)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason: ReasonCode, properties: Any) -> None:
        metrics.CONNECTOR_CONNECTED.labels(CONNECTOR).set(0)
        if not self.stop.is_set():
            log.warning("disconnected from the MQTT broker (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._inbox.put(message)

    # --- the worker thread -----------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> bool:
        """Map and submit (or dead-letter) one message; False only when stopping first."""
        return self.intake.take(
            lambda: alarm_to_report(device_from_topic(topic), payload, self.registry),
            source=f"mqtt:{topic}", key=f"mqtt:{topic}", raw=payload,
            default_reason="invalid_payload")

    def run(self) -> int:
        self.client.connect_async(self.target.host, self.target.port, keepalive=30)
        self.client.loop_start()
        try:
            while not self.stop.is_set():
                try:
                    message = self._inbox.get(timeout=0.5)
                except queue.Empty:
                    continue
                if not self.handle(message.topic, bytes(message.payload)):
                    break
                if message.qos > 0:
                    self.client.ack(message.mid, message.qos)
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            metrics.CONNECTOR_CONNECTED.labels(CONNECTOR).set(0)
        return 0
