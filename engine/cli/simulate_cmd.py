"""``griddispatch simulate FILE.jsonl``: classify and route history in one process.

No Kafka, no Redis: operators use it to see what a rule set would do with real reports before
they deploy it. The clock is each report's own ``reported_at`` (see ``engine.simulate``), so
a run is reproducible. Outcomes go to standard output (or ``--out``) as JSON lines; the
counts go to standard error so that they never mix with the data.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import IO

from engine.cli.options import Commands, add_rules_dir, command
from engine.rules.load import load_rules
from engine.runtime.settings import Settings
from engine.simulate import OUTCOMES, simulate


def register(commands: Commands) -> None:
    sim = command(commands, "simulate", simulate_file)
    sim.add_argument("file", type=Path, help="intake reports, one per line ('-' for standard "
                                             "input)")
    add_rules_dir(sim)
    sim.add_argument("--out", type=Path, help="write the outcomes here instead of standard "
                                              "output")
    sim.add_argument("--until", type=_instant, metavar="ISO8601",
                     help="run the clock on to this instant after the last line (default: "
                          "until every pending SLA step has fired)")
    sim.add_argument("--no-sla", action="store_true",
                     help="leave out SLA escalations (only what happens to each report)")


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"'{text}' is not ISO 8601, e.g. "
                                         "2026-11-30T18:00:00+08:00") from exc
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("give an offset, e.g. +08:00")
    return value


def open_lines(path: Path, stack: ExitStack) -> Iterator[bytes]:
    """The file's lines as bytes ('-' is standard input); OSError if it cannot be opened."""
    if str(path) == "-":
        return iter(sys.stdin.buffer)
    return iter(stack.enter_context(path.open("rb")))


def simulate_file(args: argparse.Namespace, settings: Settings) -> int:
    rules_dir = args.rules_dir if args.rules_dir is not None else settings.rules_dir
    ruleset = load_rules(rules_dir)  # FileProblems → printed by main, exit 1
    counts: Counter[str] = Counter()
    with ExitStack() as stack:
        try:
            lines = open_lines(args.file, stack)
            out: IO[str] = (stack.enter_context(args.out.open("w", encoding="utf-8"))
                            if args.out is not None else sys.stdout)
        except OSError as exc:
            print(f"error: {exc.filename}: {exc.strerror}", file=sys.stderr)
            return 2
        try:
            for outcome in simulate(ruleset, lines, escalations=not args.no_sla,
                                    until=args.until):
                counts[outcome["outcome"]] += 1
                out.write(json.dumps(outcome, ensure_ascii=False) + "\n")
        except BrokenPipeError:  # the reader (head, less) had enough: not a failure
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    print(summary(counts, ruleset.revision), file=sys.stderr)
    return 0


def summary(counts: Counter[str], revision: str) -> str:
    parts = ", ".join(f"{counts[o]} {o}" for o in OUTCOMES)
    lines = sum(counts[o] for o in OUTCOMES if o != "escalated")
    return f"simulate: {lines} lines: {parts} (rules revision {revision})"


__all__ = ["register"]
