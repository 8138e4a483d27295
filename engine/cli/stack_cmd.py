"""``griddispatch stack up|down|status``: the local Kafka + Redis that the project starts."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from engine.settings import Settings
from engine.stack import LocalStack, ServerStatus, StackPorts
from engine.stack.kafka_broker import DEFAULT_PORT as KAFKA_PORT
from engine.stack.process import StackError
from engine.stack.redis_server import DEFAULT_PORT as REDIS_PORT

DEFAULT_HOME = Path(os.environ.get("GRIDDISPATCH_STACK_DIR", ".stack"))


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    stack = commands.add_parser("stack", help="start, stop or inspect the local Kafka + Redis",
                                description="Start, stop or inspect the local Kafka + Redis.")
    verbs = stack.add_subparsers(dest="verb", metavar="VERB", required=True)
    up = verbs.add_parser("up", help="start Kafka (KRaft) and Redis, if not running",
                          description="Start Kafka (KRaft) and Redis, if not running.")
    add_stack_options(up)
    up.set_defaults(handler=stack_up)
    for name, handler, text in (("down", stack_down, "stop Kafka and Redis started by 'up'"),
                                ("status", stack_status, "show Kafka and Redis, ports and pids")):
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


def start_stack(args: argparse.Namespace) -> LocalStack:
    stack = LocalStack(args.dir)
    ports = StackPorts(kafka=args.kafka_port, kafka_controller=args.kafka_port + 1,
                       redis=args.redis_port)
    statuses = stack.up(ports)
    for status in statuses:
        print(describe(status))
    print(f"logs: {stack.kafka.log}  {stack.redis.log}")
    return stack


def describe(status: ServerStatus) -> str:
    state = ("running" if status.answering else "not answering") if status.running else "stopped"
    pid = f"pid {status.pid}" if status.pid else "no pid"
    return f"{status.name:<6} {state:<14} 127.0.0.1:{status.port:<6} {pid}"


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
