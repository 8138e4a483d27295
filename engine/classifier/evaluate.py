"""``rules eval``: how well the rules stage classifies labelled reports it never trained on.

Each line of an evaluation file is one labelled report: ``text`` (or a whole intake
``report``), ``matter_code`` (null when it fits no item), ``urgent`` (danger to life),
``style`` and ``kind``. Every line goes through the real rules stage (``classify_report``:
placement, keyword rules, the model, thresholds, urgency), so the figures are what
dispatch would do, not what the model alone would.

Figures (shares of the lines they are about):
- dispatch rate: item reports dispatched automatically;
- platform right: item reports dispatched to the right platform (strict), and, looser,
  decided or first-suggested platform right (a person accepts the suggestion in one click);
- platform precision: of the dispatched reports, the right platform;
- item right: item reports dispatched with the right item (strict), and decided or
  first-suggested item right;
- no-item reports sent to triage; urgent recall (and precision).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.calendar import SHANGHAI
from engine.classify import classify_report
from engine.contracts import Classified, IntakeReport, Triage
from engine.rules import RuleSet
from engine.yamlfile import FileProblem, FileProblems

EVAL_AT = datetime(2026, 11, 24, 10, 0, tzinfo=SHANGHAI)  # a Tuesday morning: office hours
# Where a line without a report of its own is reported from, by writing style: the channel
# that style arrives by. The place is the sample county's first township (its rules apply).
CHANNEL_OF_STYLE = {"hotline": "hotline", "patrol": "gridapp", "colloquial": "open311",
                    "letter": "open311"}


class EvalLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, min_length=1)
    report: dict[str, Any] | None = None
    matter_code: str | None = Field(pattern=r"^\d{6}$")
    urgent: bool = False
    style: str = "other"
    kind: str = "item"


@dataclass(frozen=True)
class Labelled:
    line: int
    report: IntakeReport
    matter: str | None
    urgent: bool
    style: str
    kind: str


def load_eval(path: Path, ruleset: RuleSet) -> list[Labelled]:
    """Every line, validated; problems name the file and line (all of them at once)."""
    problems: list[FileProblem] = []
    out: list[Labelled] = []
    township = _first_township(ruleset)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FileProblems([FileProblem(str(path), 0, f"cannot read: {exc}")]) from None
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            line = EvalLine.model_validate_json(text)
            if (line.text is None) == (line.report is None):
                raise ValueError("give either 'text' or 'report'")
            if line.matter_code is not None and line.matter_code not in ruleset.matters:
                raise ValueError(f"matter_code {line.matter_code} is not in the catalogue")
            data = line.report or {
                "channel": CHANNEL_OF_STYLE.get(line.style, "hotline"),
                "channel_id": f"eval-{number}", "reported_at": EVAL_AT.isoformat(),
                "description": line.text, "division_code": township}
            report = IntakeReport.model_validate(data)
        except (ValidationError, ValueError) as exc:
            problems.append(FileProblem(str(path), number, str(exc).splitlines()[0]))
            continue
        out.append(Labelled(number, report, line.matter_code, line.urgent, line.style,
                            line.kind))
    if problems:
        raise FileProblems(problems)
    return out


def _first_township(ruleset: RuleSet) -> str:
    return min(code for code, d in ruleset.jurisdiction.divisions.items()
               if d.level == "township")


@dataclass
class Counts:
    """Counts behind the figures, for one slice of the lines (all, a platform, a style)."""

    items: int = 0
    dispatched: int = 0
    platform_right_dispatched: int = 0
    platform_right_top: int = 0
    item_right_dispatched: int = 0
    item_right_top: int = 0
    none_lines: int = 0
    none_to_triage: int = 0
    urgent_lines: int = 0
    urgent_marked: int = 0
    marked: int = 0
    all_dispatched: int = 0
    all_dispatched_platform_right: int = 0

    def figures(self) -> dict[str, float | int | None]:
        def share(a: int, b: int) -> float | None:
            return round(a / b, 4) if b else None  # nothing to measure in this slice

        return {
            "lines": self.items + self.none_lines,
            "dispatch_rate": share(self.dispatched, self.items),
            "platform_right_share": share(self.platform_right_dispatched, self.items),
            "platform_right_or_suggested": share(self.platform_right_top, self.items),
            "platform_precision_dispatched": share(self.all_dispatched_platform_right,
                                                   self.all_dispatched),
            "item_right_share": share(self.item_right_dispatched, self.items),
            "item_right_or_suggested": share(self.item_right_top, self.items),
            "no_item_to_triage": share(self.none_to_triage, self.none_lines),
            "urgent_recall": share(self.urgent_marked, self.urgent_lines),
            "urgent_precision": share(self.urgent_marked, self.marked),
        }


@dataclass
class Evaluation:
    overall: Counts = field(default_factory=Counts)
    by_platform: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    by_style: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    by_kind: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    item_lines: Counter[str] = field(default_factory=Counter)
    item_right: Counter[str] = field(default_factory=Counter)
    confusions: Counter[tuple[str, str]] = field(default_factory=Counter)
    missed_urgent: list[int] = field(default_factory=list)

    def as_json(self, ruleset: RuleSet, worst: int = 10) -> dict[str, Any]:
        names = {code: m.name for code, m in ruleset.matters.by_code.items()}
        names[""] = "(no item)"
        worst_items = sorted(self.item_lines, key=lambda c: (
            self.item_right[c] / self.item_lines[c], -self.item_lines[c], c))[:worst]
        return {
            "overall": self.overall.figures(),
            "by_platform": {k: v.figures() for k, v in sorted(self.by_platform.items())},
            "by_style": {k: v.figures() for k, v in sorted(self.by_style.items())},
            "by_kind": {k: v.figures() for k, v in sorted(self.by_kind.items())},
            "worst_items": [{"matter_code": c, "name": names[c], "lines": self.item_lines[c],
                             "right": self.item_right[c]} for c in worst_items],
            "confusions": [{"expected": a, "expected_name": names[a], "got": b,
                            "got_name": names[b], "count": n}
                           for (a, b), n in self.confusions.most_common(worst)],
            "missed_urgent_lines": self.missed_urgent[:50],
        }


def evaluate(ruleset: RuleSet, lines: Iterable[Labelled]) -> Evaluation:
    result = Evaluation()
    platform_of: dict[str, str] = {c: m.platform for c, m in ruleset.matters.by_code.items()}
    for labelled in lines:
        outcome = classify_report(ruleset, labelled.report, EVAL_AT)
        decided: str | None = None
        top: str | None = None
        marked = False
        if isinstance(outcome, Classified):
            decided = top = outcome.matter_code
            marked = outcome.priority == "urgent"
        elif isinstance(outcome, Triage):
            top = outcome.matter_code or (outcome.suggestions[0].matter_code
                                          if outcome.suggestions else None)
            marked = outcome.urgent
        expected = labelled.matter
        true_platform = platform_of[expected] if expected else "none"
        for tally in (result.overall, result.by_platform[true_platform],
                      result.by_style[labelled.style], result.by_kind[labelled.kind]):
            _count(tally, labelled, decided, top, marked, platform_of)
        if expected:
            result.item_lines[expected] += 1
            result.item_right[expected] += decided == expected
            if decided != expected:
                result.confusions[(expected, decided or "")] += 1
        elif decided:
            result.confusions[("", decided)] += 1
        if labelled.urgent and not marked:
            result.missed_urgent.append(labelled.line)
    return result


def _count(tally: Counts, labelled: Labelled, decided: str | None, top: str | None,
           marked: bool, platform_of: dict[str, str]) -> None:
    expected = labelled.matter
    if decided:
        tally.all_dispatched += 1
        tally.all_dispatched_platform_right += bool(
            expected and platform_of[decided] == platform_of[expected])
    if expected:
        tally.items += 1
        tally.dispatched += decided is not None
        tally.platform_right_dispatched += bool(
            decided and platform_of[decided] == platform_of[expected])
        tally.platform_right_top += bool(top and platform_of[top] == platform_of[expected])
        tally.item_right_dispatched += decided == expected
        tally.item_right_top += top == expected
    else:
        tally.none_lines += 1
        tally.none_to_triage += decided is None
    tally.urgent_lines += labelled.urgent
    tally.urgent_marked += labelled.urgent and marked
    tally.marked += marked


def render(report: dict[str, Any]) -> str:
    """The operator's table: overall, per platform and style, worst items, confusions."""
    out: list[str] = []
    columns = [("dispatch_rate", "dispatch"), ("platform_right_share", "platform ok"),
               ("platform_precision_dispatched", "precision"),
               ("item_right_share", "item ok"), ("item_right_or_suggested", "item/sugg"),
               ("no_item_to_triage", "none→triage"), ("urgent_recall", "urgent rec")]
    head = f"{'':<22}{'lines':>6}" + "".join(f"{label:>13}" for _, label in columns)
    for title, rows in (("overall", {"all": report["overall"]}),
                        ("by platform (expected)", report["by_platform"]),
                        ("by writing style", report["by_style"]),
                        ("by kind", report["by_kind"])):
        out.append(f"{title}\n{head}")
        for name, figures in rows.items():
            out.append(f"{name:<22}{figures['lines']:>6}"
                       + "".join(f"{figures[key]:>13.1%}" if figures[key] is not None
                                 else f"{'-':>13}" for key, _ in columns))
        out.append("")
    out.append("worst items (dispatched right / lines)")
    for row in report["worst_items"]:
        out.append(f"  {row['matter_code']} {row['name']}: {row['right']}/{row['lines']}")
    out.append("most common confusions (expected → got; '' is triage)")
    for row in report["confusions"]:
        out.append(f"  {row['expected'] or '-'} {row['expected_name']} → "
                   f"{row['got'] or '-'} {row['got_name']}: {row['count']}")
    if report["missed_urgent_lines"]:
        out.append("urgent lines not marked urgent: "
                   + ", ".join(str(n) for n in report["missed_urgent_lines"]))
    return "\n".join(out)


def report_json(report: dict[str, Any]) -> str:
    return json.dumps(report, ensure_ascii=False, indent=2)


def cross_validate(ruleset: RuleSet, folds: int) -> dict[str, Any]:
    """The model alone, cross-validated over the examples (each scored by a model trained
    without it), thresholds chosen as training chooses them; per writing style too."""
    from engine.classifier.model import NONE
    from engine.classifier.train import (
        boosted,
        calibrate,
        keyword_items,
        out_of_fold,
        platform_decisions,
        platforms_of,
        softmax,
        training_set,
    )

    settings = ruleset.classifier.model_copy(update={"folds": folds})
    data = training_set(ruleset.examples, ruleset.matters, ruleset.urgent_words())
    if not data.examples:
        return {"folds": folds, "examples": 0}
    platforms = platforms_of(ruleset.matters)
    keywords = keyword_items(ruleset.matters)
    oof = out_of_fold(data, settings)
    calibration = calibrate(data, oof, settings, platforms, keywords)
    n = data.examples
    probabilities = boosted(softmax(oof.scores, calibration.temperature), data.texts[:n],
                            oof.classes, keywords, settings.keyword_boost)
    platform, confidence, matter = platform_decisions(probabilities, oof.classes, platforms)
    by_style: dict[str, dict[str, float | int | None]] = {}
    for style in sorted(set(data.styles)):
        tally = Counts()
        for i in (i for i in range(n) if data.styles[i] == style):
            expected = data.labels[i] or None
            decided = (str(matter[i]) if platform[i] != NONE
                       and confidence[i] >= calibration.dispatch_threshold else None)
            tally.items += expected is not None
            tally.none_lines += expected is None
            tally.dispatched += bool(expected and decided)
            tally.item_right_dispatched += bool(expected and decided == expected)
            right = bool(expected and decided and platforms[decided] == platforms[expected])
            tally.platform_right_dispatched += right
            tally.all_dispatched += decided is not None
            tally.all_dispatched_platform_right += right
            tally.none_to_triage += expected is None and decided is None
        by_style[style] = tally.figures()
    return {"folds": folds, "examples": n, "temperature": round(calibration.temperature, 4),
            "dispatch_threshold": calibration.dispatch_threshold,
            "urgent_threshold": round(calibration.urgent_threshold, 4),
            "overall": {k: round(v, 4) for k, v in calibration.cv.items()},
            "by_style": by_style}
