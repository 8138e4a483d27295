"""The one entry point, ``griddispatch``: thin glue from arguments to engine functions.

Exit codes are the same everywhere: 0 ok, 1 a failure was found (bad rules, a pending topic
change, a server that would not start), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from engine import __version__
from engine.cli import (
    acl_cmd,
    connect_cmd,
    console_cmd,
    dept_cmd,
    intake_cmd,
    replay_cmd,
    report_cmd,
    rules_cmd,
    run_cmd,
    simulate_cmd,
    stack_cmd,
    timers_cmd,
    topics_cmd,
    webhooks_cmd,
    worker_cmd,
)
from engine.cli.stack import StackError
from engine.runtime.kafka import KafkaUnavailable
from engine.runtime.settings import Settings
from engine.yamlfile import FileProblems

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="griddispatch",
        description="Dispatch grassroots governance incidents: one entry, one exit, on Kafka.")
    parser.add_argument("--version", action="version", version=f"griddispatch {__version__}")
    parser.add_argument("--bootstrap", metavar="HOST:PORT",
                        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS, "
                             "else the port 'up' chose (.stack/ports.json), else "
                             "127.0.0.1:9092)")
    parser.add_argument("--redis", metavar="URL",
                        help="Redis URL (default: $REDIS_URL, else the port 'up' chose "
                             "(.stack/ports.json), else redis://127.0.0.1:6379/0)")
    parser.add_argument("--topic-prefix", metavar="PREFIX",
                        help="prefix for every topic and group name "
                             "(default: $GRIDDISPATCH_TOPIC_PREFIX or none)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (run_cmd, stack_cmd, topics_cmd, rules_cmd, worker_cmd, simulate_cmd,
                   dept_cmd, timers_cmd, intake_cmd, connect_cmd, replay_cmd, webhooks_cmd,
                   report_cmd, console_cmd, acl_cmd):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = Settings.from_env().with_(kafka_bootstrap=args.bootstrap, redis_url=args.redis,
                                         topic_prefix=args.topic_prefix)
    try:
        return int(args.handler(args, settings))
    except FileProblems as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_FAILURE
    except (StackError, KafkaUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
