"""No import circles in operator/vigil, and every package has its place in a layer.

Circles are found on the whole import graph (grimp, as import-linter reads
it): imports inside functions and under ``TYPE_CHECKING`` count, since a
circle hidden behind either is still a circle a reader has to untangle.
Modules are checked one by one, and packages (``vigil.core``,
``vigil.profile``...) as wholes.
"""

from __future__ import annotations

import configparser
from collections.abc import Iterable, Mapping
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "operator" / "vigil"


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("vigil")


def _cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node, or a node importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _module_edges(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    return {
        module: {m for m in graph.find_modules_directly_imported_by(module) if m in graph.modules}
        for module in graph.modules
    }


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_the_cycle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back() -> None:
    cycles = _cycles(_module_edges(_graph()))
    assert not cycles, f"import circles between modules: {cycles}"


def test_no_package_imports_itself_back() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in _module_edges(_graph()).items():
        packages.setdefault(_package(module), set()).update(
            _package(t) for t in targets if _package(t) != _package(module)
        )
    cycles = _cycles(packages)
    assert not cycles, f"import circles between packages: {cycles}"


def _layered() -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    layers = config["importlinter:contract:layers"]["layers"]
    return {
        name.strip()
        for line in layers.splitlines()
        for name in line.replace("|", " ").replace(":", " ").split()
        if name.strip()
    }


def test_every_package_sits_in_the_layers_contract() -> None:
    packages = {f"vigil.{path.parent.name}" for path in PACKAGE.glob("*/__init__.py")} | {
        f"vigil.{path.stem}" for path in PACKAGE.glob("*.py") if path.stem != "__init__"
    }
    missing = sorted(packages - _layered())
    assert not missing, f"packages in no layer of .importlinter's layers contract: {missing}"
