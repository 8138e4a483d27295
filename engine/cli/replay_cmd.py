"""``griddispatch replay FILE.jsonl``: a file of intake reports into the live intake.

Each line goes through ``IntakePublisher`` exactly like a live report (acknowledged by the
broker, deduplicated on channel + channel id). Bad lines are named (line, field), counted
and skipped, never sent; the exit code is 1 when any line was bad, so a script notices.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import IO, TYPE_CHECKING

from engine.cli.options import Commands, command
from engine.runtime.redis_clients import redis_client
from engine.runtime.settings import Settings

if TYPE_CHECKING:
    from connectors.intake.publish import IntakePublisher
    from engine.contracts import IntakeReport

# How long one line may wait for Kafka before the replay stops (the lines before it are in).
BROKER_PATIENCE_SECONDS = 30.0


def register(commands: Commands) -> None:
    replay = command(commands, "replay", run_replay)
    replay.add_argument("file", type=Path, metavar="FILE.jsonl", help="the reports ('-': stdin)")
    replay.add_argument("--rate", metavar="N/s",
                        help="at most N reports a second (also N/m, N/h); default: no limit")
    replay.add_argument("--burst", type=int, default=1,
                        help="with --rate: how many may go at once after a pause (default 1)")
    replay.add_argument("--dry-run", action="store_true",
                        help="only check the lines; send nothing (no Kafka or Redis needed)")


def _lines(path: Path) -> tuple[IO[str], int | None]:
    if str(path) == "-":
        return sys.stdin, None
    with path.open(encoding="utf-8", errors="replace") as counting:
        total = sum(1 for _ in counting)
    return path.open(encoding="utf-8", errors="replace"), total


def run_replay(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from connectors.bridges.replay import LineProblem, TokenBucket, parse_line, parse_rate

    try:
        bucket = TokenBucket(parse_rate(args.rate), args.burst) if args.rate else None
    except ValueError as exc:
        print(f"error: --rate: {exc}", file=sys.stderr)
        return 2
    try:
        source, total = _lines(args.file)
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    counts: Counter[str] = Counter()
    publisher = None if args.dry_run else _publisher(settings)
    try:
        with source, tqdm(source, total=total, unit="line", disable=None,
                          file=sys.stderr) as lines:
            for number, text in enumerate(lines, start=1):
                parsed = parse_line(text, number)
                if parsed is None:
                    continue
                if isinstance(parsed, LineProblem):
                    counts["invalid"] += 1
                    tqdm.write(f"error: {args.file}:{parsed}", file=sys.stderr)
                    continue
                if publisher is None:
                    counts["valid"] += 1
                    continue
                if bucket is not None:
                    time.sleep(bucket.take(time.monotonic()))
                outcome = _submit(publisher, parsed, number)
                counts[outcome] += 1
                if outcome == "unavailable":
                    break
    finally:
        if publisher is not None:
            publisher.close()
    _record(counts)
    if args.dry_run:
        print(f"dry run, nothing sent: valid {counts['valid']}, invalid {counts['invalid']}")
    else:
        print(f"accepted {counts['accepted']}, duplicates {counts['duplicate']}, "
              f"invalid {counts['invalid']}")
    if counts["unavailable"]:
        return 1
    return 1 if counts["invalid"] else 0


def _publisher(settings: Settings) -> IntakePublisher:

    from connectors.intake.publish import IntakePublisher

    return IntakePublisher(settings, redis_client(settings.redis_url))


def _submit(publisher: IntakePublisher, report: IntakeReport, line: int) -> str:
    """``accepted``, ``duplicate``, or ``unavailable`` (said on stderr) when Kafka stays away."""
    from engine.runtime.kafka import KafkaUnavailable

    deadline = time.monotonic() + BROKER_PATIENCE_SECONDS
    while True:
        try:
            return "duplicate" if publisher.submit(report).duplicate else "accepted"
        except KafkaUnavailable as exc:
            if time.monotonic() > deadline:
                print(f"error: line {line}: Kafka did not take the report ({exc}); stopping. "
                      f"Lines before {line} are in; resume with: tail -n +{line} FILE",
                      file=sys.stderr)
                return "unavailable"
            time.sleep(2.0)


def _record(counts: Counter[str]) -> None:
    from engine.runtime import metrics

    for result in ("accepted", "duplicate", "invalid"):
        if counts[result]:
            metrics.CONNECTOR_MESSAGES.labels("replay", result).inc(counts[result])
