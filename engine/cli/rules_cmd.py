"""``griddispatch rules check|test|explain|diff`` and ``schema export``: operators' tools."""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from engine.calendar import HOLIDAY_WARNING_DAYS, SHANGHAI, holiday_data_until
from engine.classify import classify_raw
from engine.cli.options import Commands, add_rules_dir, command, group
from engine.cli.rules_files import check_every_file
from engine.cli.schemas import export_schemas
from engine.contracts import Classified, Rejected, Triage, to_json
from engine.rules.load import load_rules
from engine.rules.rule_tests import load_cases, run_case
from engine.runtime.settings import Settings
from engine.simulate import describe, destination, label, simulate
from engine.yamlfile import FileProblem, FileProblems


def register(commands: Commands) -> None:
    rules = command(commands, "rules")
    verbs = rules.add_subparsers(dest="verb", metavar="VERB", required=True)
    check = command(verbs, "rules check", rules_check)
    check.add_argument("dir", nargs="?", type=Path, help="rules folder (default: rules)")
    test = command(verbs, "rules test", rules_test)
    test.add_argument("dir", nargs="?", type=Path, help="rules folder (default: rules)")
    test.add_argument("-v", "--verbose", action="store_true", help="list passing cases too")
    explain = command(verbs, "rules explain", rules_explain)
    explain.add_argument("report", type=Path, help="a JSON file with one intake report "
                                                   "('-' for standard input)")
    add_rules_dir(explain)
    explain.add_argument("--json", action="store_true",
                         help="print the resulting record itself as one JSON object")
    diff = command(verbs, "rules diff", rules_diff)
    diff.add_argument("old", type=Path, help="the rules folder in service")
    diff.add_argument("new", type=Path, help="the candidate rules folder")
    diff.add_argument("history", type=Path, metavar="FILE.jsonl",
                      help="intake reports, one per line")
    evaluate = command(verbs, "rules eval", rules_eval)
    evaluate.add_argument("files", type=Path, nargs="*", metavar="FILE.jsonl",
                          help="labelled reports (e.g. rules/eval/*.jsonl: several files are "
                               "measured together)")
    evaluate.add_argument("--cv", type=int, metavar="K",
                          help="also cross-validate the model over the examples in K folds")
    add_rules_dir(evaluate)
    evaluate.add_argument("--json", action="store_true", help="print the figures as JSON")
    examples = group(verbs, "rules examples", dest="examples_verb")
    harvest = command(examples, "rules examples harvest", rules_examples_harvest)
    harvest.add_argument("--out", type=Path, metavar="FILE.yaml",
                         help="write the candidates here (default: standard output)")
    harvest.add_argument("--since", type=date.fromisoformat, metavar="YYYY-MM-DD",
                         help="only decisions made on or after this day")
    add_rules_dir(harvest)

    schema_verbs = group(commands, "schema", dest="verb")
    export = command(schema_verbs, "schema export", schema_export)
    export.add_argument("dir", type=Path)


def _rules_dir(given: Path | None, settings: Settings) -> Path:
    return given if given is not None else settings.rules_dir


def rules_check(args: argparse.Namespace, settings: Settings) -> int:
    root = _rules_dir(args.dir, settings)
    ruleset = load_rules(root)  # FileProblems → printed by main, exit 1
    problems, warnings = check_every_file(ruleset)
    if problems:
        raise FileProblems(problems)
    scopes = {ruleset.scope_for(code).name for code, d in ruleset.jurisdiction.divisions.items()
              if d.level == "county"}
    rules = sum(len(la.file.classify) + len(la.file.priority) + len(la.file.route)
                for la in ruleset.layers)
    print(f"rules OK: revision {ruleset.revision}; {len(ruleset.matters)} matters, "
          f"{len(ruleset.jurisdiction.grids)} grids, {len(ruleset.departments)} departments, "
          f"{len(ruleset.layers)} layers with {rules} rules, {len(scopes)} county scope(s), "
          f"{len(ruleset.examples.examples)} examples")
    if ruleset.model is not None:
        calibration = ruleset.model.calibration
        cv = calibration.cv
        print(f"classifier {ruleset.model.identity}: dispatches from platform confidence "
              f"{calibration.dispatch_threshold:.2f}; cross-validated over "
              f"{int(cv.get('examples', 0))} examples: dispatch rate "
              f"{cv.get('dispatch_rate', 0):.1%}, platform precision "
              f"{cv.get('platform_precision_dispatched', 0):.1%}, item right "
              f"{cv.get('item_right_share', 0):.1%}, urgent recall "
              f"{cv.get('urgent_recall', 0):.1%}")
    for warning in [*ruleset.warnings, *warnings]:
        print(f"warning: {warning}", file=sys.stderr)
    until = holiday_data_until(ruleset.holidays)
    left = (until - datetime.now(SHANGHAI).date()).days
    if left < HOLIDAY_WARNING_DAYS:  # a warning, not a failure: the rules themselves are fine
        print(f"warning: the holiday data ends on {until} ({left} days from today); working-"
              "time limits past it use a provisional calendar (statutory holidays only, "
              "without the notice's rearranged days). Enter next year's State Council "
              f"notice in {root / 'reference' / 'holidays.yaml'} or upgrade chinesecalendar.",
              file=sys.stderr)
    return 0


def rules_test(args: argparse.Namespace, settings: Settings) -> int:
    root = _rules_dir(args.dir, settings)
    ruleset = load_rules(root)
    cases = load_cases(root / "tests")
    failed = 0
    for loaded in cases:
        result = run_case(ruleset, loaded)
        if result.passed:
            if args.verbose:
                print(f"ok    {loaded.case.name}")
            continue
        failed += 1
        print(f"FAIL  {loaded.case.name}  ({loaded.where})")
        for mismatch in result.mismatches:
            print(f"      {mismatch}")
    print(f"rules test: {len(cases) - failed} passed, {failed} failed "
          f"(revision {ruleset.revision})")
    return 1 if failed or not cases else 0


def rules_explain(args: argparse.Namespace, settings: Settings) -> int:
    ruleset = load_rules(_rules_dir(args.rules_dir, settings))
    raw = sys.stdin.buffer.read() if str(args.report) == "-" else args.report.read_bytes()
    trace: list[str] = []
    outcome = classify_raw(ruleset, raw, datetime.now(UTC), trace)
    if args.json:
        sys.stdout.write(to_json(outcome).decode("utf-8") + "\n")
        return 0
    print(f"rules revision {ruleset.revision}")
    for line in trace:
        print(line)
    if isinstance(outcome, Classified):
        print(f"→ classified: {outcome.matter_code} {outcome.matter_name} "
              f"[{outcome.platform}, {outcome.priority}] grid {outcome.grid_code or '-'} "
              f"(placed by {outcome.placed_by}, classified by {outcome.classified_by})")
        for match in outcome.matched_rules:
            print(f"   {match.field:<12} {match.rule:<28} {match.layer}: {match.why}")
        from engine.routing.decide import route

        decision = route(ruleset, outcome)
        names = {d.code: d.name for d in ruleset.departments}
        chain = outcome.division_chain
        table = ruleset.routing_for(chain[2] if len(chain) > 2 else None)
        lines = {r.id: r.line for r in table.rules}
        if table.default is not None:
            lines["default_route"] = table.default.line
        assist = ", ".join(f"{a} {names.get(a, '')}".rstrip() for a in decision.assist)
        print(f"→ routed: lead {decision.lead} {names.get(decision.lead, '')}".rstrip())
        print(f"   assist {assist or '-'}; sla {decision.sla}; priority {decision.priority}")
        for match in decision.matched:
            where = f" line {lines[match.rule]}" if match.rule in lines else ""
            print(f"   {match.field:<12} {match.rule:<28} {match.layer}{where}: {match.why}")
    elif isinstance(outcome, Triage):
        print(f"→ triage: {outcome.reason}: {outcome.detail}")
    elif isinstance(outcome, Rejected):
        print(f"→ rejected: {outcome.reason}: {outcome.detail}")
    return 0


def rules_eval(args: argparse.Namespace, settings: Settings) -> int:
    from engine.classifier.evaluate import (
        cross_validate,
        evaluate,
        load_eval,
        render,
        report_json,
    )

    if not args.files and args.cv is None:
        print("error: give FILE.jsonl, --cv K, or both", file=sys.stderr)
        return 2
    if args.cv is not None and args.cv < 2:
        print("error: --cv needs at least 2 folds", file=sys.stderr)
        return 2
    ruleset = load_rules(_rules_dir(args.rules_dir, settings))
    result: dict[str, Any] = {"revision": ruleset.revision}
    if args.files:
        problems: list[FileProblem] = []
        lines = []
        for path in args.files:
            try:
                lines += load_eval(path, ruleset)
            except FileProblems as exc:
                problems += exc.problems
        if problems:
            raise FileProblems(problems)  # printed by main, exit 1
        result["eval"] = evaluate(ruleset, lines).as_json(ruleset)
    if args.cv is not None:
        result["cv"] = cross_validate(ruleset, args.cv)
    if args.json:
        print(report_json(result))
        return 0
    print(f"rules revision {ruleset.revision}")
    if "eval" in result:
        print(" ".join(str(f) for f in args.files) + ":")
        print(render(result["eval"]))
    if "cv" in result:
        print(f"\ncross-validation over the examples ({args.cv} folds; the model alone):")
        print(report_json(result["cv"]))
    return 0


def rules_diff(args: argparse.Namespace, settings: Settings) -> int:
    """Both runs stream the file side by side (it is never loaded whole), and each keeps its
    own case store, as two deployments would: merging depends on the rules too."""
    old, new = load_rules(args.old), load_rules(args.new)
    try:
        with args.history.open("rb") as old_lines, args.history.open("rb") as new_lines:
            total = changed = 0
            for before, after in zip(simulate(old, old_lines), simulate(new, new_lines),
                                     strict=True):
                total += 1
                if destination(before) != destination(after):
                    changed += 1
                    print(f"{label(before)}  {describe(before)} → {describe(after)}")
    except OSError as exc:
        print(f"error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"{changed} of {total} incidents would go elsewhere "
          f"(revision {old.revision} → {new.revision})")
    return 1 if changed else 0


def rules_examples_harvest(args: argparse.Namespace, settings: Settings) -> int:
    """Read ``triage.decisions`` to its end (a reader of its own, nothing committed) and write
    the candidates; the operator reviews them before anything reaches rules/examples."""
    from engine.console.harvest import harvest
    from engine.contracts import TriageDecision
    from engine.runtime import kafka

    ruleset = load_rules(_rules_dir(args.rules_dir, settings), with_model=False)
    decisions: list[TriageDecision] = []
    unreadable = 0

    def add(_key: bytes | None, value: bytes | None) -> None:
        nonlocal unreadable
        try:
            decisions.append(TriageDecision.model_validate_json(value or b""))
        except ValueError:
            unreadable += 1

    try:
        kafka.read_to_end(settings, settings.topic("triage.decisions"), add,
                          f"griddispatch-harvest-{uuid.uuid4().hex[:12]}", 120.0)
    except kafka.KafkaUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    since = (datetime.combine(args.since, datetime.min.time(), tzinfo=SHANGHAI)
             if args.since else None)
    text, count = harvest(decisions, ruleset.matters, ruleset.examples, since)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    print(f"{count} candidates from {len(decisions)} decisions"
          + (f" ({unreadable} unreadable records skipped)" if unreadable else "")
          + (f"; written to {args.out}" if args.out else ""), file=sys.stderr)
    return 0


def schema_export(args: argparse.Namespace, settings: Settings) -> int:
    for path in export_schemas(args.dir):
        print(path)
    return 0


__all__ = ["register"]
