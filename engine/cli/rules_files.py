"""``rules check`` reads every file under the rules folder, not only those a worker loads.

A rule set loads its reference data, layers and examples (``load_rules``); the other
files are read by other programs at other times (bridge mappings when a bridge starts, the
device registry when the MQTT bridge starts, rule tests in CI, the evaluation set by
``rules eval``). A syntax error there used to pass ``rules check`` and surface only when
that program started. Here each file is read by the loader its program uses; a file that
no loader reads is reported too, so a misplaced or misspelt file does not go unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from engine.rules import RuleSet
from engine.yamlfile import FileProblem, FileProblems


def check_every_file(ruleset: RuleSet) -> tuple[list[FileProblem], list[FileProblem]]:
    """(problems, warnings) of the files ``load_rules`` does not read itself."""
    from connectors.bridges.mapping import BridgeMapping
    from connectors.channels.sensors import DeviceRegistry
    from engine.classifier.evaluate import load_eval
    from engine.reference.grid_shapes import grid_shape_problems
    from engine.rules.rule_tests import load_cases

    root = ruleset.root
    grids_file = str(root / "reference" / "grids.geojson")
    problems = [FileProblem(grids_file, 0, problem)
                for problem in grid_shape_problems(list(ruleset.jurisdiction.grids.values()))]
    read: set[Path] = set()

    def attempt(paths: list[Path], load: Callable[[], object]) -> None:
        read.update(paths)
        try:
            load()
        except FileProblems as exc:
            problems.extend(exc.problems)

    for path in sorted((root / "bridges").glob("*.yaml")):
        attempt([path], lambda p=path: BridgeMapping.load(p))  # type: ignore[misc]
    devices = root / "reference" / "devices.yaml"
    if devices.exists():
        attempt([devices], lambda: DeviceRegistry.load(devices, ruleset.channels))
    tests = root / "tests"
    if tests.is_dir():
        attempt(sorted(tests.glob("*.yaml")), lambda: load_cases(tests))
    for path in sorted((root / "eval").glob("*.jsonl")):
        attempt([path], lambda p=path: load_eval(p, ruleset))  # type: ignore[misc]
    loaded_by_ruleset = {root / "reference" / name for name in (
        "matters.yaml", "divisions.yaml", "grids.geojson", "departments.yaml",
        "channels.yaml", "holidays.yaml", "classifier.yaml")}
    loaded_by_ruleset.update((root / "layers").glob("*.yaml"))
    loaded_by_ruleset.update((root / "examples").rglob("*.yaml"))
    warnings = [FileProblem(str(path), 0, "no part of griddispatch reads this file: move it "
                                          "where it belongs or remove it")
                for path in sorted(p for p in root.rglob("*") if p.is_file())
                if path not in read and path not in loaded_by_ruleset
                and not path.name.startswith(".")]
    return problems, warnings
