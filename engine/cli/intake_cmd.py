"""``griddispatch intake``: the HTTP intake (Open311, JSON API, hotline, grid app) until a signal.

``griddispatch intake hash-key [KEY]`` prints the SHA-256 line for the key file (a new
random key when none is given), so keys never have to be stored in clear anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from engine.cli.long_running import start_logging
from engine.cli.options import Commands, add_rules_dir, command
from engine.runtime.settings import Settings

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8080


def register(commands: Commands) -> None:
    intake = command(commands, "intake", run_intake)
    intake.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}; any other needs "
                             "--keys)")
    intake.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port (default {DEFAULT_PORT})")
    intake.add_argument("--keys", type=Path, metavar="FILE",
                        help="API key file (default: $GRIDDISPATCH_INTAKE_KEYS; without one "
                             "only the development key dev-open311 on loopback)")
    add_rules_dir(intake)
    intake.add_argument("--ack-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="how long to wait for the broker's ack before answering 503 "
                             "(default 10)")
    sub = intake.add_subparsers(dest="intake_command", metavar="COMMAND")
    hash_key = command(sub, "intake hash-key", run_hash_key)
    hash_key.add_argument("key", nargs="?", help="the key (default: generate one)")


def run_hash_key(args: argparse.Namespace, _settings: Settings) -> int:
    from connectors.intake.keys import hash_key, new_key

    key = args.key or new_key()
    if not args.key:
        print(f"key:    {key}   (give this to the client; it is not stored)")
    print(f"sha256: {hash_key(key)}")
    return 0


def run_intake(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.intake.keys import Keys
    from connectors.intake.open311 import Catalog
    from connectors.intake.server import start
    from connectors.intake.service import Intake
    from engine.reference.channels import ChannelMaps

    start_logging()
    settings = settings.with_(rules_dir=args.rules_dir)
    try:
        keys = Keys.for_server(args.keys, args.host)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    catalog = Catalog.load(settings.rules_dir)
    hotline = frozenset(ChannelMaps.load(settings.rules_dir / "reference" / "channels.yaml")
                        .maps["hotline"])
    intake = Intake.build(settings, catalog, keys, hotline_categories=hotline,
                          ack_timeout=args.ack_timeout)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        runner = await start(intake, args.host, args.port)
        logging.info("intake listening on http://%s:%d (Open311 at /open311/v2/, JSON API at "
                     "/api/v1/); reports go to %s", args.host, args.port,
                     settings.topic("incidents.reported"))
        await stop.wait()
        await runner.cleanup()

    try:
        asyncio.run(serve())
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port} ({exc.strerror}); choose "
              "another --port", file=sys.stderr)
        return 1
    finally:
        intake.close()
    return 0
