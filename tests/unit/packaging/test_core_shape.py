"""The core stays readable: modules of one concern, short functions (issue 15's figures).

A function over about 60 lines is where a newcomer loses the thread; the
exceptions are flat runbooks, read top to bottom like Flagger's, named here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CORE = ROOT / "operator" / "vigil" / "core"

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
#: Flat runbooks: one branch per state, no helpers to hide the order in.
RUNBOOKS = {"rollout.py:decide"}


def test_no_core_module_is_over_500_lines() -> None:
    # Past that a module holds more than one concern: split it as judges/ and desired/ were.
    sizes = {str(p.relative_to(CORE)): len(p.read_text().splitlines()) for p in CORE.rglob("*.py")}
    long = {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert not long, f"core modules over {MAX_MODULE_LINES} lines: {long}"


def _long_functions() -> dict[str, int]:
    found = {}
    for path in sorted(CORE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            lines = (node.end_lineno or node.lineno) - first + 1
            if lines > MAX_FUNCTION_LINES:
                found[f"{path.relative_to(CORE)}:{node.name}"] = lines
    return found


def test_no_core_function_is_over_60_lines_but_the_runbooks() -> None:
    found = _long_functions()
    assert found.keys() >= RUNBOOKS, f"a runbook is short now: drop it from RUNBOOKS: {found}"
    long = {name: lines for name, lines in found.items() if name not in RUNBOOKS}
    assert not long, f"core functions over {MAX_FUNCTION_LINES} lines: {long}"
