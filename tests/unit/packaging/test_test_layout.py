"""The test tree itself: pytest imports test modules by basename (rootdir mode), and a
plain `pytest tests/unit` starts its workers as `make test-unit` does."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

TESTS = Path(__file__).resolve().parents[2]


def test_every_test_module_basename_is_unique() -> None:
    # Without __init__.py files, two test modules with one basename make the
    # whole collection fail ("import file mismatch"), not just one folder.
    paths: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        paths[path.name].append(str(path.relative_to(TESTS)))
    clashes = {name: found for name, found in paths.items() if len(found) > 1}
    assert not clashes, f"test modules sharing a basename: {clashes}"


def _unit_conftest() -> ModuleType:
    path = TESTS / "unit" / "conftest.py"
    spec = importlib.util.spec_from_file_location("unit_conftest_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config(*args: str, numprocesses: object = None, usepdb: bool = False) -> object:
    return SimpleNamespace(
        args=list(args),
        option=SimpleNamespace(numprocesses=numprocesses, usepdb=usepdb),
        invocation_params=SimpleNamespace(dir=TESTS.parent),
    )


@pytest.mark.parametrize(
    ("config", "parallel"),
    [
        (_config("tests/unit"), True),
        (_config("tests/unit/core", "tests/unit/sidecar/"), True),
        (_config("tests/unit/core/test_stats.py"), False),
        (_config("tests/unit/core/test_stats.py::test_wilson"), False),
        (_config("tests"), False),
        (_config("tests/unit", "tests/e2e"), False),
        (_config("tests/unit", numprocesses=0), False),
        (_config("tests/unit", numprocesses=3), False),
        (_config("tests/unit", usepdb=True), False),
    ],
    ids=["unit", "unit-folders", "one-file", "node-id", "all", "with-e2e", "n0", "n3", "pdb"],
)
def test_a_plain_pytest_of_the_unit_folders_runs_on_every_core(
    config: object, parallel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert _unit_conftest()._should_start_workers(config) is parallel


def test_an_xdist_worker_or_a_single_core_never_starts_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conftest = _unit_conftest()
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    assert not conftest._should_start_workers(_config("tests/unit"))
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert not conftest._should_start_workers(_config("tests/unit"))


def _rewrite_script() -> ModuleType:
    path = TESTS.parent / "hack" / "rewrite_tests.py"
    spec = importlib.util.spec_from_file_location("rewrite_tests_under_test", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_make_rewrites_only_test_modules_with_no_fresh_rewritten_copy(tmp_path: Path) -> None:
    script = _rewrite_script()
    tag = f"{sys.implementation.cache_tag}-pytest-{pytest.__version__}"
    (tmp_path / "__pycache__").mkdir()
    for name in ("test_new", "test_rewritten", "test_edited", "conftest", "helpers"):
        (tmp_path / f"{name}.py").write_text("")
    (tmp_path / "__pycache__" / f"test_rewritten.{tag}.pyc").write_bytes(b"")
    (tmp_path / "__pycache__" / f"test_edited.{tag}.pyc").write_bytes(b"")
    os.utime(tmp_path / "__pycache__" / f"test_edited.{tag}.pyc", (1, 1))
    assert [path.name for path in script.stale_test_modules(tmp_path)] == [
        "conftest.py",
        "test_edited.py",
        "test_new.py",
    ]


@pytest.mark.slow  # a pytest of its own
def test_pytest_takes_the_rewritten_module_make_wrote_as_its_own(tmp_path: Path) -> None:
    module = tmp_path / "test_made.py"
    module.write_text("def test_sum():\n    total = 1 + 1\n    assert total == 3\n")
    script = _rewrite_script()
    script.rewrite(module)
    copy = script.rewritten_copy(module)
    written = copy.read_bytes()
    os.utime(copy, (1, 1))  # made an instant ago: a second rewrite would show in its time
    plain = ["-q", "-p", "no:xdist", "-p", "no:cacheprovider", "--rootdir", str(tmp_path)]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *plain, str(module)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "assert 2 == 3" in run.stdout, run.stdout  # the rewritten assert said it
    assert copy.stat().st_mtime == 1 and copy.read_bytes() == written  # read, not made again
