"""``griddispatch worker classify|route``: run a stream worker in the foreground until a signal.

Faust normally owns the command line (``app.main()``); ours is argparse, so we build the app
ourselves and hand it to ``faust.Worker``, which installs the SIGTERM / SIGINT handlers that
stop the consumer cleanly. The rules are loaded while building the app, before any Kafka
connection, so a broken rules folder fails at once with every problem listed (exit 1).
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from engine.cli import timers_cmd, webhooks_cmd
from engine.cli.long_running import add_metrics_port, port_taken, run_logged, start_logging
from engine.cli.options import Commands, add_rules_dir, command
from engine.runtime.settings import Settings

DEFAULT_METRICS_PORT = 9101
DEFAULT_ROUTE_METRICS_PORT = 9102


def register(commands: Commands) -> None:
    """Every kind of worker, here: classify and route run from this module; timers and
    webhooks have their handlers beside their other commands."""
    worker = command(commands, "worker")
    kinds = worker.add_subparsers(dest="kind", metavar="KIND", required=True)
    classify = command(kinds, "worker classify", run_classify)
    add_rules_dir(classify)
    add_metrics_port(classify, DEFAULT_METRICS_PORT)
    route = command(kinds, "worker route", run_route)
    add_rules_dir(route)
    add_metrics_port(route, DEFAULT_ROUTE_METRICS_PORT)
    route.add_argument("--instance", default="0", type=_instance_id,
                       help="this instance's stable id (default 0): keep it across restarts, "
                            "give each instance running at once its own")
    route.add_argument("--linger-ms", type=_non_negative, default=None, metavar="MS",
                       help="under load (16 or more records queued), keep taking what "
                            "arrives for up to MS milliseconds after a batch's first record "
                            "(default 0: only what is already queued); one transaction per "
                            "batch")
    route.add_argument("--batch-max", type=_positive, default=None, metavar="N",
                       help="records per batch (transaction) at most (default 500)")
    timers = command(kinds, "worker timers")
    add_rules_dir(timers)
    add_metrics_port(timers, timers_cmd.DEFAULT_TIMERS_METRICS_PORT)
    timers.add_argument("--audit-every", type=float, default=300.0, metavar="SECONDS",
                        help="how often to check every open case has its timers (default 300)")
    timers.set_defaults(handler=timers_cmd.run_worker)
    webhooks = command(kinds, "worker webhooks")
    webhooks_cmd.config_option(webhooks)
    add_metrics_port(webhooks, webhooks_cmd.DEFAULT_METRICS_PORT)
    webhooks.set_defaults(handler=webhooks_cmd.run_worker)


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if not 0 <= value <= 60_000:
        raise argparse.ArgumentTypeError(f"{text}: give 0 to 60000")
    return value


def _positive(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 100_000:
        raise argparse.ArgumentTypeError(f"{text}: give a whole number from 1 to 100000")
    return int(text)


def _instance_id(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", text):
        raise argparse.ArgumentTypeError("use letters, digits, '.', '_' or '-' (at most 64)")
    return text


def run_classify(args: argparse.Namespace, settings: Settings) -> int:
    import faust  # imported here: faust is slow to import and only workers need it

    from engine.runtime.workers.classify import build_app

    settings = settings.with_(rules_dir=args.rules_dir)
    # The rules' own log lines (reload results) must show even before Faust sets up logging.
    start_logging()
    with tempfile.TemporaryDirectory(prefix="griddispatch-classify-") as datadir:
        try:
            app = build_app(settings, settings.rules_dir, args.metrics_port or None,
                            datadir=Path(datadir))
        except OSError as exc:
            return port_taken(args.metrics_port, exc)
        worker = faust.Worker(app, loglevel="INFO", redirect_stdouts=False)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:  # execute_from_commandline always ends with sys.exit
            return exc.code if isinstance(exc.code, int) else 1
    return 0


def run_route(args: argparse.Namespace, settings: Settings) -> int:
    from engine.runtime.workers.route import run

    settings = settings.with_(rules_dir=args.rules_dir)
    from engine.runtime.workers import route

    linger = route.LINGER_SECONDS if args.linger_ms is None else args.linger_ms / 1000
    batch_max = route.BATCH if args.batch_max is None else args.batch_max
    return run_logged(lambda: run(settings, args.instance, args.metrics_port or None,
                                  linger, batch_max), args.metrics_port)
