"""``griddispatch worker webhooks`` and ``griddispatch webhooks retry``: thin glue to
``connectors.outgoing.webhooks`` (the configuration is checked completely before anything
starts)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from engine.cli.long_running import run_logged
from engine.cli.options import Commands, add_rules_dir, command, group
from engine.runtime.settings import Settings

DEFAULT_METRICS_PORT = 9107


def register(commands: Commands) -> None:
    verbs = group(commands, "webhooks", dest="verb")
    retry = command(verbs, "webhooks retry", run_retry)
    config_option(retry)
    retry.add_argument("--department", metavar="CODE",
                       help="only this department's parked deliveries")
    retry.add_argument("--attempts", type=int, default=3,
                       help="POSTs per record in this run before re-parking it (default 3)")


def config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="webhook configuration YAML (default: $GRIDDISPATCH_WEBHOOKS)")
    add_rules_dir(parser)


def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.outgoing.webhooks.config import config_path
    from connectors.outgoing.webhooks.worker import run

    settings = settings.with_(rules_dir=args.rules_dir)
    return run_logged(lambda: run(settings, config_path(args.config), args.metrics_port or None),
                      args.metrics_port)


def run_retry(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.outgoing.webhooks.config import config_path, load_config
    from connectors.outgoing.webhooks.retry import redrive
    from engine.reference.departments import DepartmentRegistry

    settings = settings.with_(rules_dir=args.rules_dir)
    logging.basicConfig(level=logging.WARNING, format="[%(levelname)s] %(message)s")
    if args.attempts < 1:
        print("error: --attempts must be at least 1", file=sys.stderr)
        return 2
    registry = DepartmentRegistry.load(settings.rules_dir / "reference" / "departments.yaml")
    targets = load_config(config_path(args.config), registry)
    if args.department is not None and args.department not in targets:
        print(f"error: department '{args.department}' is not in the webhook configuration "
              f"(configured: {', '.join(targets)})", file=sys.stderr)
        return 2
    summary = redrive(settings, targets, args.department, args.attempts)
    print(summary)
    return 1 if summary.parked else 0
