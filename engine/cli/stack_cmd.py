"""``griddispatch stack up|down|status``: the local Kafka, Redis and MQTT broker we start."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from engine.cli.options import Commands, command
from engine.cli.stack import LocalStack, ServerStatus, StackPorts
from engine.cli.stack.kafka_broker import DEFAULT_PORT as KAFKA_PORT
from engine.cli.stack.mosquitto import DEFAULT_PORT as MQTT_PORT
from engine.cli.stack.process import StackError
from engine.cli.stack.prometheus import DEFAULT_PORT as PROMETHEUS_PORT
from engine.cli.stack.redis_server import DEFAULT_PORT as REDIS_PORT
from engine.runtime.settings import Settings

DEFAULT_HOME = Path(os.environ.get("GRIDDISPATCH_STACK_DIR", ".stack"))


def register(commands: Commands) -> None:
    stack = command(commands, "stack")
    verbs = stack.add_subparsers(dest="verb", metavar="VERB", required=True)
    up = command(verbs, "stack up", stack_up)
    add_stack_options(up)
    for name, handler, text in (("down", stack_down, "stop the servers started by 'up'"),
                                ("status", stack_status, "show Kafka, Redis and MQTT, ports "
                                                         "and pids")):
        verb = verbs.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        verb.add_argument("--dir", type=Path, default=DEFAULT_HOME,
                          help="stack folder (default: $GRIDDISPATCH_STACK_DIR or .stack)")
        verb.set_defaults(handler=handler)


def add_stack_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=DEFAULT_HOME,
                        help="stack folder: data, logs, pids (default: .stack)")
    parser.add_argument("--kafka-port", type=int, default=KAFKA_PORT,
                        help=f"Kafka listener port; the controller uses the next one "
                             f"(default {KAFKA_PORT})")
    parser.add_argument("--redis-port", type=int, default=REDIS_PORT,
                        help=f"Redis port (default {REDIS_PORT})")
    parser.add_argument("--mqtt-port", type=int, default=MQTT_PORT,
                        help=f"Mosquitto (MQTT) port (default {MQTT_PORT})")
    parser.add_argument("--secure", action="store_true",
                        help="run Kafka in the secure profile: SASL/SCRAM for every client, ACLs "
                             "from the department registry; the admin's password is kept in "
                             "<dir>/kafka/secrets.json (mode 0600) and used by every command "
                             "run against this stack. Sticks to the broker's storage")
    parser.add_argument("--prometheus", action="store_true",
                        help="also run Prometheus (Debian's package) scraping the workers and "
                             "evaluating ops/prometheus/alerts.yml")
    parser.add_argument("--prometheus-port", type=int, default=PROMETHEUS_PORT,
                        help=f"Prometheus port, with --prometheus (default {PROMETHEUS_PORT})")


def start_stack(args: argparse.Namespace,
                scrape_targets: dict[str, str] | None = None) -> LocalStack:
    stack = LocalStack(args.dir)
    ports = StackPorts(kafka=args.kafka_port, kafka_controller=args.kafka_port + 1,
                       redis=args.redis_port, mqtt=args.mqtt_port,
                       prometheus=args.prometheus_port)
    statuses = stack.up(ports, with_prometheus=args.prometheus, secure=args.secure,
                        scrape_targets=scrape_targets)
    for status in statuses:
        print(describe(status))
    prometheus_log = f"  {stack.prometheus.log}" if args.prometheus else ""
    print(f"logs: {stack.kafka.log}  {stack.redis.log}  {stack.mqtt.log}{prometheus_log}")
    return stack


def describe(status: ServerStatus) -> str:
    state = ("running" if status.answering else "not answering") if status.running else "stopped"
    pid = f"pid {status.pid}" if status.pid else "no pid"
    return f"{status.name:<10} {state:<14} 127.0.0.1:{status.port:<6} {pid}"


def stack_up(args: argparse.Namespace, settings: Settings) -> int:
    start_stack(args)
    return 0


def stack_down(args: argparse.Namespace, settings: Settings) -> int:
    stopped = LocalStack(args.dir).down()
    print("stopped: " + ", ".join(stopped) if stopped else "nothing was running")
    return 0


def stack_status(args: argparse.Namespace, settings: Settings) -> int:
    statuses = LocalStack(args.dir).status()
    for status in statuses:
        print(describe(status))
    return 0 if all(s.answering for s in statuses) else 1


__all__ = ["StackError", "add_stack_options", "register", "start_stack"]
