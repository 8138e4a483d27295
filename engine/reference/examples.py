"""Labelled example reports that operators keep beside the rules (``rules/examples/*.yaml``).

People do not write the catalogue's phrases, so the rules stage learns from examples written
the way residents, 12345 operators and grid workers write. Operators add an example the way
they add a keyword: under the item's code and the writing style, as a plain string, or as
``{text: ..., urgent: true}`` when it describes danger to life now. Reports that fit no
item go under ``none:``, so the classifier learns to send them to triage.

Every file is read and checked at load time: an unknown item code, a text given twice
(anywhere in the corpus) or an empty text is an error naming file and line; an item with
fewer than ``MIN_EXAMPLES`` examples is a warning naming the count.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections import Counter
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.yamlfile import FileProblem, FileProblems, LoadedYaml, load_yaml, validate

Style = Literal["hotline", "patrol", "colloquial", "letter", "other"]
STYLES: tuple[Style, ...] = ("hotline", "patrol", "colloquial", "letter", "other")
MIN_EXAMPLES = 15  # fewer and cross-validation shows the item is guessed, not learned
MAX_TEXT = 2000  # a description longer than this is cut by the intake contract anyway


class ExampleText(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=2, max_length=MAX_TEXT)
    urgent: bool = Field(default=False, description="danger to life now (gas, fire, people "
                                                    "trapped or hurt, self-harm, missing "
                                                    "child or elder, violence in progress)")


Entry = str | ExampleText
StyleGroups = dict[Style, list[Entry]]


class ExampleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: dict[str, StyleGroups] = Field(default_factory=dict,
                                          description="item code → writing style → reports")
    none: StyleGroups = Field(default_factory=dict,
                              description="reports that fit no catalogue item")


@dataclass(frozen=True)
class Example:
    text: str
    matter: str | None  # None: fits no catalogue item (the classifier's "none" class)
    urgent: bool
    style: Style
    file: str
    line: int


@dataclass(frozen=True)
class ExampleCorpus:
    examples: tuple[Example, ...] = ()
    warnings: tuple[FileProblem, ...] = ()
    digest: str = ""  # names the corpus in the model's identity ("" when empty)

    def counts(self) -> Counter[str | None]:
        return Counter(e.matter for e in self.examples)


def same_text(text: str) -> str:
    """The form two texts are compared in for duplicates: width, case and spaces ignored."""
    return "".join(unicodedata.normalize("NFKC", text).lower().split())


def load_examples(folder: Path, items: Container[str],
                  all_items: list[str] | None = None) -> ExampleCorpus:
    """Every ``*.yaml`` under ``folder`` (none when it is absent); problems name file, line.

    ``items`` are the catalogue's item codes; ``all_items`` (in catalogue order) are those
    whose counts are checked against ``MIN_EXAMPLES``.
    """
    if not folder.is_dir():
        return ExampleCorpus()
    problems: list[FileProblem] = []
    examples: list[Example] = []
    seen: dict[str, Example] = {}
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.yaml")):
        try:
            doc = load_yaml(path)
            parsed = validate(doc, ExampleFile)
        except FileProblems as exc:
            problems.extend(exc.problems)
            continue
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
        for code, groups in parsed.items.items():
            if code not in items:
                problems.append(doc.problem(("items", code), f"item {code} is not in the "
                                            "catalogue (rules/reference/matters.yaml)"))
                continue
            examples += _read(doc, ("items", code), groups, code, seen, problems)
        examples += _read(doc, ("none",), parsed.none, None, seen, problems)
    if problems:
        raise FileProblems(problems)
    counts = Counter(e.matter for e in examples)
    warnings = tuple(
        FileProblem(str(folder), 0, f"item {code} has {counts[code]} example(s); give it at "
                                    f"least {MIN_EXAMPLES} so the classifier can learn it")
        for code in all_items or () if counts[code] < MIN_EXAMPLES)
    return ExampleCorpus(tuple(examples), warnings,
                         digest.hexdigest()[:12] if examples else "")


def _read(doc: LoadedYaml, where: tuple[str | int, ...], groups: StyleGroups, code: str | None,
          seen: dict[str, Example], problems: list[FileProblem]) -> list[Example]:
    out: list[Example] = []
    for style, entries in groups.items():
        for i, entry in enumerate(entries):
            path: tuple[str | int, ...] = (*where, style, i)
            text, urgent = (entry, False) if isinstance(entry, str) else (entry.text,
                                                                          entry.urgent)
            text = text.strip()
            if len(text) < 2:
                problems.append(doc.problem(path, "an example needs a text of at least two "
                                                  "characters"))
                continue
            example = Example(text, code, urgent, style, doc.file, doc.line_of(path))
            key = same_text(text)
            first = seen.get(key)
            if first is not None:
                problems.append(doc.problem(path, f"this text is already an example at "
                                                  f"{first.file}:{first.line}; keep one"))
                continue
            seen[key] = example
            out.append(example)
    return out
