"""``griddispatch connect mqtt|kafka``: run a channel bridge in the foreground until a signal.

Reference files (device registry, mapping) are loaded and checked before any connection,
so a typo fails at once with its file and line (exit 1).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from engine.cli.long_running import add_metrics_port, port_taken, start_logging
from engine.cli.options import Commands, add_rules_dir, command, group
from engine.runtime.redis_clients import redis_client
from engine.runtime.settings import Settings

DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
DEFAULT_MQTT_METRICS_PORT = 9105
DEFAULT_KAFKA_METRICS_PORT = 9106


def register(commands: Commands) -> None:
    kinds = group(commands, "connect", dest="kind")
    mqtt = command(kinds, "connect mqtt", run_mqtt)
    mqtt.add_argument("--url", default=os.environ.get("MQTT_URL", DEFAULT_MQTT_URL),
                      help="broker: mqtt://[user:password@]host[:port] or mqtts://… "
                           f"(default: $MQTT_URL or {DEFAULT_MQTT_URL})")
    mqtt.add_argument("--devices", type=Path, metavar="FILE",
                      help="device registry (default: <rules>/reference/devices.yaml)")
    add_rules_dir(mqtt)
    mqtt.add_argument("--client-id", default="griddispatch-mqtt-bridge",
                      help="MQTT client id; keep it stable: the broker keeps this id's "
                           "session and queued alarms (the topic prefix is prepended)")
    mqtt.add_argument("--share", metavar="GROUP",
                      help="subscribe as a shared subscription ($share/GROUP/…) so several "
                           "bridges (each with its own --client-id) split the alarms")
    add_metrics_port(mqtt, DEFAULT_MQTT_METRICS_PORT)

    kafka = command(kinds, "connect kafka", run_kafka)
    kafka.add_argument("--source", metavar="TOPIC",
                       help="the department system's topic (used as given, not prefixed; "
                            "default: the mapping's source_topic)")
    kafka.add_argument("--mapping", required=True, type=Path, metavar="FILE",
                       help="mapping YAML (see rules/bridges/)")
    kafka.add_argument("--group", metavar="G",
                       help="consumer group (default: bridge.<mapping name>; the topic prefix "
                            "is prepended)")
    add_metrics_port(kafka, DEFAULT_KAFKA_METRICS_PORT)


def _serve(run: Callable[[], int], stop: threading.Event, metrics_port: int) -> int:
    from engine.runtime import metrics

    start_logging()
    if metrics_port:
        try:
            metrics.serve_metrics(metrics_port, "bridge")
        except OSError as exc:
            return port_taken(metrics_port, exc)

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return run()


def run_mqtt(args: argparse.Namespace, settings: Settings) -> int:

    from connectors.bridges.mqtt import MqttBridge, MqttTarget
    from connectors.channels.sensors import DeviceRegistry
    from connectors.deadletter import IntakeDeadLetters
    from connectors.intake.publish import IntakePublisher
    from engine.reference.channels import ChannelMaps

    settings = settings.with_(rules_dir=args.rules_dir)
    try:
        target = MqttTarget.parse(args.url)
    except ValueError as exc:
        print(f"error: --url: {exc}", file=sys.stderr)
        return 2
    reference = settings.rules_dir / "reference"
    registry = DeviceRegistry.load(args.devices or reference / "devices.yaml",
                                   ChannelMaps.load(reference / "channels.yaml"))
    publisher = IntakePublisher(settings, redis_client(settings.redis_url))
    dead_letters = IntakeDeadLetters(settings)
    bridge = MqttBridge(target, settings.topic(args.client_id), registry, publisher,
                        dead_letters, share_group=args.share)
    try:
        return _serve(bridge.run, bridge.stop, args.metrics_port)
    finally:
        publisher.close()
        dead_letters.close()


def run_kafka(args: argparse.Namespace, settings: Settings) -> int:

    from connectors.bridges.kafka import KafkaBridge
    from connectors.bridges.mapping import BridgeMapping
    from connectors.deadletter import IntakeDeadLetters
    from connectors.intake.publish import IntakePublisher

    mapping = BridgeMapping.load(args.mapping)
    source = args.source or mapping.source_topic
    if not source:
        print(f"error: {args.mapping} names no source_topic: give the department system's "
              "topic with --source", file=sys.stderr)
        return 2
    publisher = IntakePublisher(settings, redis_client(settings.redis_url))
    dead_letters = IntakeDeadLetters(settings)
    bridge = KafkaBridge(settings, source, mapping, publisher, dead_letters, args.group)
    try:
        return _serve(bridge.run, bridge.stop, args.metrics_port)
    finally:
        publisher.close()
        dead_letters.close()
