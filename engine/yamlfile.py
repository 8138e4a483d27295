"""Load operator-edited YAML so that every error names the file, the line and the fix.

Operators edit topic specs and rule files by hand. PyYAML alone forgets where a value came
from and silently keeps the last of two duplicate keys; pydantic alone reports a path, not a
line. This module keeps a map from each value's path to its line, refuses duplicate keys,
and turns pydantic's errors into ``file:line: sentence`` messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Path_ = tuple[str | int, ...]
# libyaml's parser when installed (it is in PyYAML's wheels): same nodes and marks, ~10x faster.
_PARSER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True)
class FileProblem:
    """One problem in one file, at one line (0 when the whole file is at fault)."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


class FileProblems(Exception):
    """Raised with every problem found, so an operator can fix them all in one pass."""

    def __init__(self, problems: Iterable[FileProblem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class LoadedYaml:
    """A parsed document plus the line of every mapping key and sequence item in it."""

    file: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Path_) -> int:
        """The line of the deepest known ancestor of ``path`` (1-based; 0 if unknown)."""
        for cut in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:cut]))
            if line is not None:
                return line
        return 0

    def problem(self, path: Path_, message: str) -> FileProblem:
        return FileProblem(self.file, self.line_of(path), message)


def _to_python(node: yaml.Node, path: Path_, lines: dict[Path_, int], file: str,
               loader: yaml.SafeLoader) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        merged: list[yaml.MappingNode] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` (or a list of them)
                sources = (value_node.value if isinstance(value_node, yaml.SequenceNode)
                           else [value_node])
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        raise FileProblems([FileProblem(
                            file, source.start_mark.line + 1,
                            "'<<' merges mappings only: give it an anchored mapping "
                            "(<<: *name) or a list of them")])
                    merged.append(source)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise FileProblems([FileProblem(file, key_node.start_mark.line + 1,
                                                "mapping keys must be plain scalars")])
            name = key_node.value
            if name in out:
                raise FileProblems([FileProblem(
                    file, key_node.start_mark.line + 1,
                    f"duplicate key '{name}': YAML would silently keep only the last one; "
                    "remove or merge one of them")])
            out[name] = _to_python(value_node, (*path, name), lines, file, loader)
            lines[(*path, name)] = key_node.start_mark.line + 1  # the key's line, not its value's
        # Merged keys fill in what the mapping does not say itself (YAML's merge-key rule:
        # explicit keys win, then earlier sources over later ones).
        for source in merged:
            for key_node, value_node in source.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                        key_node, yaml.ScalarNode) or key_node.value in out:
                    continue
                out[key_node.value] = _to_python(value_node, (*path, key_node.value), lines,
                                                 file, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, i), lines, file, loader)
                for i, item in enumerate(node.value)]
    return loader.construct_object(node)


def parse_yaml(text: str, file: str) -> LoadedYaml:
    """Parse one YAML document, keeping lines; syntax errors become a FileProblem."""
    try:
        node = yaml.compose(text, Loader=_PARSER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        what = exc.problem or "invalid YAML"
        raise FileProblems([FileProblem(file, line, f"YAML syntax error: {what}")]) from None
    except yaml.YAMLError as exc:
        raise FileProblems([FileProblem(file, 0, f"YAML syntax error: {exc}")]) from None
    lines: dict[Path_, int] = {}
    loader = yaml.SafeLoader("")  # only its scalar constructors are used
    try:
        data = None if node is None else _to_python(node, (), lines, file, loader)
    except yaml.MarkedYAMLError as exc:  # a tag the safe loader refuses (!!python/...)
        mark = exc.problem_mark or exc.context_mark
        raise FileProblems([FileProblem(
            file, mark.line + 1 if mark else 0,
            f"{exc.problem or exc}: rule files are plain YAML, without tags")]) from None
    return LoadedYaml(file=file, data=data, lines=lines)


def load_yaml(path: Path) -> LoadedYaml:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FileProblems([FileProblem(str(path), 0, f"not UTF-8 text ({exc.reason})")]) from None
    except OSError as exc:
        raise FileProblems([FileProblem(str(path), 0, f"cannot read: {exc.strerror}")]) from None
    return parse_yaml(text, str(path))


def _describe(error: Any) -> str:
    """Phrase one pydantic error as a sentence an operator can act on."""
    loc = [str(p) for p in error["loc"]]
    field_name = loc[-1] if loc else "(document)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key '{field_name}': remove it or check its spelling"
    if kind == "missing":
        return f"missing required key '{field_name}'"
    where = ".".join(loc) if loc else "document"
    return f"{where}: {error['msg']}"


def validate(doc: LoadedYaml, model: type[ModelT]) -> ModelT:
    """Validate a parsed document against a pydantic model, raising line-numbered problems."""
    try:
        return model.model_validate(doc.data if doc.data is not None else {})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = tuple(p for p in err["loc"] if isinstance(p, str | int))
            if err["type"] == "missing":
                path = path[:-1]
            problems.append(doc.problem(path, _describe(err)))
        raise FileProblems(problems) from None


def load_folder(folder: Path, model: type[ModelT]) -> list[tuple[LoadedYaml, ModelT]]:
    """Every ``*.yaml`` in a folder, sorted by name, validated; all files' problems at once."""
    loaded: list[tuple[LoadedYaml, ModelT]] = []
    problems: list[FileProblem] = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            doc = load_yaml(path)
            loaded.append((doc, validate(doc, model)))
        except FileProblems as exc:
            problems.extend(exc.problems)
    if problems:
        raise FileProblems(problems)
    return loaded
