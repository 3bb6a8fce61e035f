"""Every page uses the operator's own words: conditions, reasons, Events, gates, metrics.

A page that says "`Ready` False with reason `RolledBack`", "a Warning Event
`RolloutFailed`" or lists the gates is checked against what the code does
(tests/unit/docs/code_catalogue.py runs the real decisions); so are the
CRD's field descriptions, which `kubectl explain` shows.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from code_catalogue import catalogue
from doc_pages import PAGES, ROOT, name, prose, tables

import yaml_kit

CRD = ROOT / "crds" / "modeldeployments.yaml"
CONDITION_TYPES = (
    "Ready",
    "Progressing",
    "Reconciling",
    "Stalled",
    "Healthy",
    "DriftDetected",
    "MetricsAvailable",
    "PerformanceDegraded",
)
TYPE = "|".join(CONDITION_TYPES)
STATUS = "True|False|Unknown"
#: "`Ready` False with reason `RolledBack`", "`Healthy` False, reason `ErrorRateHigh`",
#: "`Ready=False` with reason `RolledBack`", "DriftDetected ... with reason DriftWarning".
CONDITION_CLAIM = re.compile(
    rf"`?({TYPE})`?(?:=| is | stays | turns | are |\s)\s*`?({STATUS})?`?"
    rf"[^.;|()]{{0,60}}?\breason `?([A-Z][A-Za-z]+)`?"
)
NAMED_REASONS = re.compile(r"\breasons? `([A-Z][A-Za-z]+)`((?:,? (?:or |and )?`[A-Z][A-Za-z]+`)*)")
NAMED_EVENTS = re.compile(
    r"(?:(Warning|Normal) )?Events? `([A-Z][A-Za-z]+)`|`([A-Z][A-Za-z]+)` Events?\b"
)


def crd_descriptions() -> str:
    """Every description in the CRD (what `kubectl explain` shows), one sentence after another."""

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("description"), str):
                yield node["description"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    return " ".join(" ".join(text.split()) for text in walk(yaml_kit.load(CRD.read_text())))


def texts() -> list[tuple[str, str]]:
    """(where, prose with code spans) for every page, and the CRD's descriptions."""
    found = [(name(page), prose(page.read_text(), spans=True)) for page in PAGES]
    return [*found, ("crds/modeldeployments.yaml", crd_descriptions())]


TEXTS = texts()
IDS = [where for where, _ in TEXTS]


@pytest.mark.parametrize(("where", "text"), TEXTS, ids=IDS)
def test_condition_claims_are_states_the_code_sets(where: str, text: str) -> None:
    seen = catalogue().conditions
    wrong = [
        match.group(0)
        for match in CONDITION_CLAIM.finditer(text)
        if not any(
            (kind, reason) == (match.group(1), match.group(3)) and match.group(2) in (None, status)
            for kind, status, reason in seen
        )
    ]
    assert not wrong, f"{where}: conditions the operator never sets: {wrong}"


@pytest.mark.parametrize(("where", "text"), TEXTS, ids=IDS)
def test_every_reason_named_is_one_the_code_writes(where: str, text: str) -> None:
    reasons = catalogue().reasons
    named = [
        word
        for match in NAMED_REASONS.finditer(text)
        for word in [match.group(1), *re.findall(r"`([A-Z][A-Za-z]+)`", match.group(2))]
    ]
    if where.startswith("crds/"):  # descriptions have no backquotes
        named = re.findall(r"\breason ([A-Z][A-Za-z]+)", text)
    unknown = sorted(set(named) - reasons)
    assert not unknown, f"{where} names reasons the operator never writes: {unknown}"


@pytest.mark.parametrize(("where", "text"), TEXTS, ids=IDS)
def test_every_event_named_is_one_the_operator_posts(where: str, text: str) -> None:
    posted = catalogue().events
    wrong = []
    for match in NAMED_EVENTS.finditer(text):
        kind, reason = match.group(1), match.group(2) or match.group(3)
        if reason in ("Warning", "Normal"):
            continue  # "a Warning Event", not a reason
        if reason not in posted or (kind is not None and kind not in posted[reason]):
            wrong.append(f"{match.group(0)} (posted: {sorted(posted.get(reason, ()))})")
    assert not wrong, f"{where}: Events the operator never posts so: {wrong}"


def test_the_crd_lists_every_condition_type_the_operator_sets() -> None:
    crd = yaml_kit.load(CRD.read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    conditions = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"][
        "conditions"
    ]["description"]
    kinds = {kind for kind, _, _ in catalogue().conditions}
    assert kinds == set(CONDITION_TYPES)
    missing = sorted(kind for kind in kinds if not re.search(rf"\b{kind}\b", conditions))
    assert not missing, f"status.conditions' description does not name {missing}"


GATE_PAGES = [
    page for page in PAGES if any(t.header[0] == "gate" for t in tables(page.read_text()))
]


@pytest.mark.parametrize("page", GATE_PAGES, ids=name)
def test_gate_tables_list_exactly_the_gates_the_rollout_evaluates(page: Path) -> None:
    gates = catalogue().gates
    for table in tables(page.read_text()):
        if table.header[0] != "gate":
            continue
        listed = {word for cell in table.column("gate") for word in re.findall(r"`(\w+)`", cell)}
        assert listed == gates, f"{name(page)}, table under {table.heading!r}: {sorted(listed)}"


def test_the_gate_tables_are_found() -> None:
    assert {name(page) for page in GATE_PAGES} >= {
        "docs/concepts.md",
        "docs/rollouts.md",
        "docs/troubleshooting.md",
    }


SOURCE = "\n".join(path.read_text() for path in (ROOT / "operator").rglob("*.py"))


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_every_metric_named_exists(page: Path) -> None:
    """A `vigil_*` series named in a page is one the sidecar or the operator exports."""
    missing = []
    for metric in set(re.findall(r"\bvigil_[a-z0-9_]*[a-z0-9]\b", page.read_text())):
        family = re.sub(r"_(total|bucket|sum|count)$", "", metric)
        if f'"{family}"' not in SOURCE and f'"{metric}"' not in SOURCE:
            missing.append(metric)
    assert not missing, f"{name(page)} names metrics nothing exports: {sorted(missing)}"
