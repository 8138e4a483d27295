"""``griddispatch worker timers`` and ``griddispatch timers rebuild|status``."""

from __future__ import annotations

import argparse
import sys

from engine.cli.long_running import run_logged
from engine.cli.options import Commands, command, group
from engine.runtime.redis_clients import redis_client
from engine.runtime.settings import Settings

DEFAULT_TIMERS_METRICS_PORT = 9103


def register(commands: Commands) -> None:
    actions = group(commands, "timers", dest="action")
    rebuild = command(actions, "timers rebuild", run_rebuild)
    rebuild.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS")
    status = actions.add_parser("status", help="pending timers and the next one due")
    status.set_defaults(handler=run_status)


def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    from engine.runtime.workers.timers import run

    settings = settings.with_(rules_dir=args.rules_dir)
    return run_logged(lambda: run(settings, args.metrics_port or None, args.audit_every),
                      args.metrics_port)


def run_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    import redis

    from engine.runtime.timer_restore import rebuild
    from engine.runtime.timer_store import TimerStore

    store = TimerStore(redis_client(settings.redis_url), settings.topic_prefix)
    try:
        report = rebuild(settings, store, args.timeout, force=True)
    except redis.RedisError as exc:
        print(f"error: Redis at {settings.redis_url}: {exc}", file=sys.stderr)
        return 1
    assert report is not None
    print(f"rebuilt timers of {report.open_cases} open cases from {report.records} case "
          f"records ({report.fired} escalations already fired) in {report.seconds:.1f}s")
    return 0


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    import redis

    from engine.runtime.timer_store import TimerStore

    store = TimerStore(redis_client(settings.redis_url), settings.topic_prefix)
    try:
        pending, due, built = store.pending(), store.next_due(), store.is_built()
    except redis.RedisError as exc:
        print(f"error: Redis at {settings.redis_url}: {exc}", file=sys.stderr)
        return 1
    print(f"index built: {'yes' if built else 'no (a timer worker will rebuild it)'}")
    print(f"pending timers: {pending}")
    print(f"next due: {due.astimezone().isoformat(timespec='seconds') if due else '-'}")
    return 0
