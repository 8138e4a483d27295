"""How the demo's departments answer, and the demo's short time limits.

Departments in the demo are not all diligent: some accept and resolve in time, some accept
late (warnings, a breach), some return a case that is not theirs (re-routing), some never
answer (the whole escalation ladder), and the command centres call reporters back, who are
not always satisfied (reopening). Decisions are a pure function of the case id, so a run is
reproducible and a restarted demo does not answer a case differently.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Limits a person can watch pass: minutes, not working days.
DEMO_POLICY = {"accept": "60s", "resolve": "4m", "unit": "natural", "warn_at": [50, 80],
               "ladder": [{"after": "30s"}, {"after": "60s", "to": "county.zhzx"}],
               "verify_within": "2m"}


@dataclass(frozen=True)
class Answer:
    delay_s: float
    action: str  # accepted | returned | resolved | verified
    note: str = ""
    satisfied: bool | None = None


def _roll(key: str) -> float:
    digest = hashlib.sha1(key.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def lead_answers(case_id: str, kind: str) -> list[Answer]:
    """What the lead does with a new (or re-dispatched) assignment."""
    roll = _roll(f"{case_id}:{kind}")
    if roll < 0.50:  # in time
        return [Answer(5 + 20 * roll, "accepted"), Answer(60 + 60 * roll, "resolved", "已处置完毕")]
    if roll < 0.65:  # accepts after the warnings and the breach
        return [Answer(75, "accepted"), Answer(150, "resolved", "已处置，超时签收")]
    if roll < 0.75 and kind == "new":  # not ours
        return [Answer(10, "returned", "不属于本单位职责，请改派")]
    return []  # never answers: the whole ladder


def verification(case_id: str) -> Answer:
    """The command centre's call-back (回访) after a resolution."""
    satisfied = _roll(f"{case_id}:verify") >= 0.15
    return Answer(20, "verified", "回访：群众满意" if satisfied else "回访：群众不满意",
                  satisfied)


def demo_rules(source: Path, target: Path) -> Path:
    """A copy of the rules whose SLA policies all use the demo's short limits.

    Only the ``sla:`` sections change (comments are lost in the copy, which is generated and
    thrown away with the stack), so classification and routing are the real ones.
    """
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("tests"))
    for layer in sorted((target / "layers").glob("*.yaml")):
        data: dict[str, Any] = yaml.safe_load(layer.read_text(encoding="utf-8")) or {}
        if data.get("sla"):
            data["sla"] = {name: {"description": f"demo: {name}", **DEMO_POLICY}
                           for name in data["sla"]}
            layer.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False),
                             encoding="utf-8")
    return target
