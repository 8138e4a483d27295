"""New example candidates from the command centres' decisions: the loop back to the classifier.

Every report a person sorted by hand is a report the classifier could not decide, labelled
by someone who knows the county: the most useful example there is. ``harvest`` turns
``triage.decisions`` into a file in the examples format (``rules/examples``) for an operator
to review, never into the corpus directly: one tired click must not teach the model a wrong
item. Dispatched reports become candidates of their item; rejected ones (not an incident)
candidates of ``none``. The latest decision per report wins; texts the corpus has already are
left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

import yaml

from engine.contracts import TriageDecision
from engine.reference.examples import ExampleCorpus, Style, same_text
from engine.reference.matters import MatterCatalogue

STYLE_OF_CHANNEL: dict[str, Style] = {"hotline": "hotline", "gridapp": "patrol"}


def latest(decisions: Iterable[TriageDecision]) -> list[TriageDecision]:
    """One decision per report: the last one made (a rejection later dispatched, say)."""
    by_incident: dict[str, TriageDecision] = {}
    for decision in decisions:
        known = by_incident.get(decision.incident_id)
        if known is None or decision.decided_at >= known.decided_at:
            by_incident[decision.incident_id] = decision
    return sorted(by_incident.values(), key=lambda d: d.decided_at)


def harvest(decisions: Iterable[TriageDecision], matters: MatterCatalogue,
            corpus: ExampleCorpus, since: datetime | None = None) -> tuple[str, int]:
    """The candidates file's text and how many candidates it holds."""
    known = {same_text(e.text) for e in corpus.examples}
    items: dict[str, dict[Style, list[str]]] = defaultdict(lambda: defaultdict(list))
    none: dict[Style, list[str]] = defaultdict(list)
    notes: dict[str, str] = {}
    count = 0
    for decision in latest(decisions):
        if since is not None and decision.decided_at < since:
            continue
        text = decision.description.strip()
        if not text or same_text(text) in known:
            continue
        known.add(same_text(text))
        style = STYLE_OF_CHANNEL.get(decision.channel, "other")
        code = decision.matter_code
        if decision.decision == "dispatched" and code is not None and code in matters:
            items[code][style].append(text)
        elif decision.decision == "rejected":
            none[style].append(text)
        else:
            continue
        notes[text] = (f"{decision.incident_id}, {decision.operator}, "
                       f"{decision.decided_at.date().isoformat()}"
                       + (f": {decision.reason}" if decision.reason else ""))
        count += 1
    document: dict[str, object] = {}
    if items:
        document["items"] = {code: {style: texts for style, texts in styles.items()}
                             for code, styles in sorted(items.items())}
    if none:
        document["none"] = dict(none)
    body = yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=1000) \
        if document else "{}\n"
    lines = []
    for line in body.splitlines():
        stripped = line.strip()
        code = stripped.rstrip(":").strip("'\"")
        if stripped.endswith(":") and code in matters:
            line += f"   # {matters.by_code[code].name}"
        elif stripped.startswith("- "):
            text = yaml.safe_load(stripped[2:])
            if isinstance(text, str) and text in notes:
                line += f"   # {notes[text]}"
        lines.append(line)
    header = ("# Example candidates harvested from triage.decisions: reports a person sorted by\n"
              "# hand. Review each one; move the right ones into rules/examples/ (a wrong\n"
              "# label teaches the model a wrong item), then delete this file.\n")
    return header + "\n".join(lines) + "\n", count
