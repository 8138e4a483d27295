"""Loading a rule set: read every file, check the whole, then train (or load) the model.

Everything that can be wrong with the rules is found here, at load time, and every broken
file is reported in one run: unknown matter codes, roles or scopes, disabling a rule that
does not exist, rules that can never win (shadowed). Training comes last, so a broken file
costs no training.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from engine.classifier.settings import load_classifier_settings
from engine.classifier.train import load_or_train
from engine.reference.channels import ChannelMaps
from engine.reference.departments import DepartmentRegistry
from engine.reference.examples import load_examples
from engine.reference.holidays import load_holidays
from engine.reference.jurisdiction import Jurisdiction
from engine.reference.matters import MatterCatalogue
from engine.rules.check import check
from engine.rules.layers import load_layers
from engine.rules.ruleset import RuleSet
from engine.yamlfile import FileProblem, FileProblems

T = TypeVar("T")


def load_rules(root: Path, *, with_model: bool = True) -> RuleSet:
    """Read, check and train the rule set under ``root``, reporting every broken file at once.

    ``with_model=False`` skips the classifier (the console lists matters, places and
    departments but classifies nothing, and must not wait a minute for training)."""
    reference = root / "reference"
    problems: list[FileProblem] = []

    def collect(load: Callable[[], T]) -> T | None:
        """Load one file, keeping its problems, so one run reports every broken file."""
        try:
            return load()
        except FileProblems as exc:
            problems.extend(exc.problems)
            return None

    matters = collect(lambda: MatterCatalogue.load(reference / "matters.yaml"))
    jurisdiction = collect(lambda: Jurisdiction.load(reference / "divisions.yaml",
                                                     reference / "grids.geojson"))
    departments = collect(lambda: DepartmentRegistry.load(reference / "departments.yaml"))
    channels = collect(lambda: ChannelMaps.load(reference / "channels.yaml"))
    layers = collect(lambda: load_layers(root / "layers"))
    holidays = collect(lambda: load_holidays(reference / "holidays.yaml"))
    settings = collect(lambda: load_classifier_settings(reference / "classifier.yaml"))
    examples = None
    if matters is not None:
        known = matters
        examples = collect(lambda: load_examples(root / "examples", known.by_code,
                                                 list(known.by_code)))
    if (problems or matters is None or jurisdiction is None or departments is None
            or channels is None or layers is None or holidays is None
            or settings is None or examples is None):
        raise FileProblems(problems)
    ruleset = RuleSet(root, revision_of(root), matters, jurisdiction, departments, channels,
                      layers, holidays, examples, settings)
    problems = check(ruleset)
    if problems:
        raise FileProblems(problems)
    # Trained last, once everything else is known to be right (a broken file costs no
    # training); loaded from the cache when the same inputs were trained before.
    if with_model:
        ruleset.model = load_or_train(examples, matters, settings, ruleset.urgent_words())
    return ruleset


NOT_DECIDING = {"tests", "eval"}


def revision_of(root: Path) -> str:
    """A content hash of every rule file: the same files give the same revision anywhere."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*")
                       if p.is_file() and not NOT_DECIDING & set(p.relative_to(root).parts)):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:12]
