"""The three layers, checked over the import graph (grimp), so the folders cannot drift from it.

* **core**: every ``engine`` module outside ``engine.runtime`` and ``engine.cli``. Decisions
  only: it reads rule files and its model cache, and nothing else outside the process.
* **runtime** (``engine.runtime``): Kafka, Redis, the workers, the timer store, the metrics.
* **connectors**: the HTTP intake, channel adapters, bridges and webhooks, on the runtime.
* **shell** (``engine.cli``): the CLI, the local stack and the demo, on all of the above.

Each layer may import the ones listed before it, never one after. Function-local and
``TYPE_CHECKING`` imports count too: grimp reads every import statement.
"""

from __future__ import annotations

from functools import cache

import grimp
import pytest

RUNTIME, SHELL, CONNECTORS = "engine.runtime", "engine.cli", "connectors"
# Libraries that reach outside the process: none of them may be imported by the core.
OUTSIDE = {"aiohttp", "aiokafka", "confluent_kafka", "faust", "http", "mode", "paho",
           "prometheus_client", "redis", "requests", "signal", "socket", "ssl", "subprocess",
           "urllib"}


@cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("engine", "connectors", include_external_packages=True)


def layer(module: str) -> str | None:
    if module == "engine.__main__" or module.startswith(SHELL):
        return "shell"
    if module.startswith(RUNTIME):
        return "runtime"
    if module.startswith(CONNECTORS):
        return "connectors"
    if module.startswith("engine"):
        return "core"
    return None  # a library


ORDER = ["core", "runtime", "connectors", "shell"]


def ours() -> list[str]:
    return sorted(m for m in graph().modules if layer(m) is not None)


def test_every_package_is_in_the_graph() -> None:
    """A folder without ``__init__.py`` would be left out of the graph and of this check."""
    assert {"engine.classifier.model", "engine.runtime.workers.route",
            "connectors.intake.server", "engine.cli.stack.kafka_broker"} <= set(ours())


def test_no_layer_imports_a_later_one() -> None:
    wrong = []
    for module in ours():
        mine = ORDER.index(layer(module) or "")
        for imported in graph().find_modules_directly_imported_by(module):
            theirs = layer(imported)
            if theirs is not None and ORDER.index(theirs) > mine:
                wrong.append(f"{module} ({layer(module)}) imports {imported} ({theirs})")
    assert wrong == []


def test_the_core_reaches_nothing_outside_the_process() -> None:
    wrong = [f"{module} imports {imported}"
             for module in ours() if layer(module) == "core"
             for imported in graph().find_modules_directly_imported_by(module)
             if imported.split(".")[0] in OUTSIDE]
    assert wrong == []


def strongly_connected(modules: list[str]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the groups of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    members = set(modules)

    def edges(module: str) -> list[str]:
        return sorted(m for m in graph().find_modules_directly_imported_by(module)
                      if m in members)

    for root in modules:
        if root in index:
            continue
        work = [(root, iter(edges(root)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(edges(child))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return groups


def test_no_import_circles() -> None:
    assert strongly_connected(ours()) == []


@pytest.mark.parametrize("edges, circles", [
    ({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}, [["a", "b", "c"]]),
    ({"a": ["b"], "b": []}, []),
])
def test_circle_finder_finds_circles(monkeypatch: pytest.MonkeyPatch,
                                     edges: dict[str, list[str]],
                                     circles: list[list[str]]) -> None:
    class Graph:
        def find_modules_directly_imported_by(self, module: str) -> set[str]:
            return set(edges[module])

    monkeypatch.setitem(globals(), "graph", lambda: Graph())
    assert strongly_connected(sorted(edges)) == circles
