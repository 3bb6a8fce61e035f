"""docs/architecture.md names only modules (and their functions and classes) that exist.

The page is the map a newcomer reads first; a module that moved must move
on the page too. Also: every package of operator/vigil has its row.
"""

from __future__ import annotations

import importlib
import re

from doc_pages import ROOT

PAGE = ROOT / "docs" / "architecture.md"
DOTTED = re.compile(r"\bvigil(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def resolves(dotted: str) -> bool:
    """The longest importable prefix is a module; what follows are attributes of it."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


def test_every_name_on_the_page_exists() -> None:
    names = sorted(set(DOTTED.findall(PAGE.read_text())))
    assert len(names) > 30, "the page's module names were not found"
    missing = [name for name in names if not resolves(name)]
    assert not missing, f"docs/architecture.md names what does not exist: {missing}"


def test_every_package_has_its_row() -> None:
    package = ROOT / "operator" / "vigil"
    packages = {f"vigil.{p.parent.name}" for p in package.glob("*/__init__.py")}
    packages |= {f"vigil.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    rows = set(re.findall(r"^\|[^|]*\| `(vigil\.[a-z_]+)` \|", PAGE.read_text(), re.M))
    assert packages <= rows, f"packages without a row in docs/architecture.md: {packages - rows}"


def test_every_core_module_has_its_row() -> None:
    core = ROOT / "operator" / "vigil" / "core"
    modules = {f"vigil.core.{p.stem}" for p in core.glob("*.py") if p.stem != "__init__"}
    modules |= {f"vigil.core.{p.parent.name}" for p in core.glob("*/__init__.py")}
    rows = set(re.findall(r"^\| `(vigil\.core\.[a-z_]+)` \|", PAGE.read_text(), re.M))
    assert modules <= rows, f"core modules without a row in docs/architecture.md: {modules - rows}"
