"""Vigil's Prometheus rules, checked and unit-tested with the real promtool.

promtool (3.16, with Prometheus) is built by hack/build-cluster.sh; its folder is
``$(bash hack/build-cluster.sh --print)`` (or ``VIGIL_BIN_DIR``). The rule tests
live next to the rules: manifests/monitoring/rules/tests/*.test.yaml.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from monitoring_kit import RULE_TESTS, RULES, rules

pytestmark = pytest.mark.integration


def run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=120, cwd=RULES.parent
    )


def test_rules_file_passes_promtool_check(promtool: str) -> None:
    result = run(promtool, "check", "rules", "--lint=all", "--lint-fatal", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=[p.name for p in RULE_TESTS])
def test_promtool_rule_unit_tests_pass(promtool: str, test_file: Path) -> None:
    result = run(promtool, "test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
