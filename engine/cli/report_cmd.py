"""``griddispatch report``: assess departments and grid workers by service and satisfaction.

By default it reads the compacted ``cases`` topic (every case's latest record) and prints
per lead department and per grid worker: volume, on-time acceptance and resolution,
returns, reopen rate, satisfaction and a score (``engine.report.assess`` defines them).
``--from-simulate`` summarises a ``griddispatch simulate`` output instead, which carries
volume and outcomes only. ``--html`` also writes a self-contained page with charts.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime
from pathlib import Path

from engine.calendar import SHANGHAI
from engine.cli.options import Commands, add_rules_dir, command
from engine.reference.departments import DepartmentRegistry
from engine.report.assess import assess
from engine.report.page import assessment_html, simulated_html
from engine.report.simulated import SimulateLineError, parse_lines, summarize
from engine.report.table import assessment_text, simulated_text
from engine.runtime.report_source import read_cases
from engine.runtime.settings import Settings
from engine.yamlfile import FileProblems


def register(commands: Commands) -> None:
    report = command(commands, "report", run_report)
    report.add_argument("--from-simulate", type=Path, metavar="FILE.jsonl",
                        help="summarise the output of 'griddispatch simulate' instead of the "
                             "cases topic (volume and outcomes only)")
    report.add_argument("--html", type=Path, metavar="OUT.html",
                        help="also write the report as one HTML page with inline charts")
    report.add_argument("--since", type=since_arg, metavar="DATE",
                        help="only cases opened at or after DATE (YYYY-MM-DD, Asia/Shanghai "
                             "midnight, or an ISO 8601 time)")
    add_rules_dir(report)
    report.add_argument("--timeout", type=float, default=120.0,
                        help="seconds allowed to read the cases topic (default 120)")


def since_arg(text: str) -> datetime:
    """A date is midnight in Asia/Shanghai; a time without an offset is Shanghai time too."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=SHANGHAI)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=SHANGHAI)


def department_names(rules_dir: Path) -> dict[str, str]:
    """Codes → Chinese names; without a readable registry the codes stand for themselves."""
    try:
        registry = DepartmentRegistry.load(rules_dir / "reference" / "departments.yaml")
    except (FileProblems, OSError) as exc:
        print(f"warning: department names unavailable ({exc}); showing codes",
              file=sys.stderr)
        return {}
    return {d.code: d.name for d in registry}


def run_report(args: argparse.Namespace, settings: Settings) -> int:
    rules_dir = args.rules_dir if args.rules_dir is not None else settings.rules_dir
    names = department_names(rules_dir)
    if args.from_simulate is not None:
        if args.since is not None:
            print("error: --since needs the cases topic: simulate output has no case times",
                  file=sys.stderr)
            return 2
        try:
            with args.from_simulate.open("rb") as lines:
                summary = summarize(parse_lines(lines), names)
        except OSError as exc:
            print(f"error: {exc.filename}: {exc.strerror}", file=sys.stderr)
            return 2
        except SimulateLineError as exc:
            print(f"error: {args.from_simulate}: {exc}", file=sys.stderr)
            return 2
        text, page = simulated_text(summary), simulated_html(summary)
    else:
        read = read_cases(settings, args.timeout)  # KafkaUnavailable: main prints it, exit 1
        if read.unreadable:
            print(f"warning: skipped {read.unreadable} records of the cases topic that are "
                  "not case records", file=sys.stderr)
        report = assess(read.cases, datetime.now(SHANGHAI), args.since, names)
        text, page = assessment_text(report), assessment_html(report)
    print(text)
    if args.html is not None:
        try:
            args.html.write_text(page, encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
            return 1
        print(f"\nwrote {args.html}")
    return 0
