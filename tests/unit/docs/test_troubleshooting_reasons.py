"""docs/troubleshooting.md explains every reason the operator can put in status or Events.

A person who sees a reason in `kubectl describe md` or an alert looks it up
there, so a reason added to the code without a line in the page is a gap in
the product. Reasons are CamelCase string literals in the pure core (the
conditions, rollout decisions, history outcomes and phases it writes) plus
the Events the operator layer posts itself; each must appear in the page
in backquotes.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "troubleshooting.md"
CORE = ROOT / "operator" / "vigil" / "core"
OPERATOR = ROOT / "operator" / "vigil" / "operator"

CAMEL = re.compile(r"[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)*")

#: CamelCase literals in the core that are not reasons a person sees as one.
NOT_REASONS = {
    # Kubernetes kinds and field values the core writes into child objects.
    "ConfigMap",
    "Deployment",
    "Service",
    "ModelDeployment",
    "Event",
    "ClusterIP",
    "RollingUpdate",
    "RuntimeDefault",
    # An Event's type (vigil/core/events.py), not its reason.
    "Normal",
    "Warning",
    # A Deployment's own condition type, read (not written) by the core.
    "ReplicaFailure",
    # Condition types and condition status words (the page is organised by them).
    "Ready",
    "Progressing",
    "Reconciling",
    "Stalled",
    "Healthy",
    "DriftDetected",
    "MetricsAvailable",
    "True",
    "False",
    "Unknown",
    # Python names and numbers, not API words.
    "DriftMethod",
    "Inf",
}

#: Reasons the test must find, so that moving the strings elsewhere cannot
#: make it pass by finding nothing.
KNOWN = {
    "Available",
    "RolledBack",
    "ProgressDeadlineExceeded",
    "InsufficientData",
    "MetricsUnavailable",
    "GoldenSetMismatch",
    "CheckFailed",
    "DriftAboveThreshold",
    "ErrorRateHigh",
    "ReferenceNotFound",
}


def core_literals() -> dict[str, set[str]]:
    """CamelCase string constants in the core, with the files they occur in."""
    found: dict[str, set[str]] = {}
    for path in sorted(CORE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and CAMEL.fullmatch(node.value)
            ):
                found.setdefault(node.value, set()).add(path.name)
    return found


def operator_event_reasons() -> dict[str, set[str]]:
    """Reasons of the Events the operator layer builds itself: ``Event("Reason", ...)``."""
    found: dict[str, set[str]] = {}
    for path in sorted(OPERATOR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "Event"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.setdefault(node.args[0].value, set()).add(path.name)
    return found


def documented() -> set[str]:
    return set(re.findall(r"`([A-Za-z0-9]+)`", PAGE.read_text()))


def test_the_reason_scan_finds_the_known_reasons() -> None:
    reasons = set(core_literals()) | set(operator_event_reasons())
    assert reasons >= KNOWN, f"the scan missed {sorted(KNOWN - reasons)}: did the strings move?"


def test_every_reason_the_core_emits_is_in_troubleshooting() -> None:
    missing = {
        reason: sorted(files)
        for reason, files in core_literals().items()
        if reason not in NOT_REASONS and reason not in documented()
    }
    assert not missing, (
        "reasons emitted by vigil/core but not explained in docs/troubleshooting.md "
        f"(as `Reason`): {missing}. Document them (meaning, what to do), or add the "
        "word to NOT_REASONS in this test if it is not a reason."
    )


def test_every_event_the_operator_posts_is_in_troubleshooting() -> None:
    missing = {
        reason: sorted(files)
        for reason, files in operator_event_reasons().items()
        if reason not in documented()
    }
    assert not missing, (
        f"Event reasons posted by vigil/operator missing from docs/troubleshooting.md: {missing}"
    )


def heading_anchors(text: str) -> set[str]:
    """Explicit ``<a id>`` anchors and the ids GitHub gives headings."""
    anchors = set(re.findall(r'<a id="([^"]+)"', text))
    for line in text.splitlines():
        match = re.match(r"#+\s+(.*)", line)
        if match:
            title = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(title.replace(" ", "-"))
    return anchors


def test_every_runbook_link_of_the_alerts_has_its_anchor() -> None:
    linked: dict[str, set[str]] = {}
    for path in sorted((ROOT / "manifests").rglob("*.yaml")):
        for anchor in re.findall(r"troubleshooting\.md#([A-Za-z0-9_-]+)", path.read_text()):
            linked.setdefault(anchor, set()).add(str(path.relative_to(ROOT)))
    assert linked, "no alert in manifests/ links to docs/troubleshooting.md any more"
    anchors = heading_anchors(PAGE.read_text())
    missing = {a: sorted(p) for a, p in linked.items() if a not in anchors}
    assert not missing, f"runbook anchors missing from docs/troubleshooting.md: {missing}"
