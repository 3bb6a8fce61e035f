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
import enum
import re
from pathlib import Path

import doc_pages
from code_catalogue import catalogue, posted_event_reasons, source_tree

from vigil.core import vocabulary

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
    "None",  # a headless Service's clusterIP
    "RollingUpdate",
    "RuntimeDefault",
    # imagePullPolicy values of the containers running Vigil's image.
    "Always",
    "IfNotPresent",
    "Never",
    # An Event's type (vigil/core/events.py), not its reason.
    "Normal",
    "Warning",
    # A Deployment's own condition type and Progressing reason, read (not written) by the core.
    "ReplicaFailure",
    "NewReplicaSetAvailable",
    # The kubelet's words on a pod, read by the core (a model fetch's state).
    "Evicted",
    "PodInitializing",
    "ContainerCreating",
    "CreateContainerConfigError",
    # terminationMessagePolicy of the fetch init container.
    "File",
    # Condition types and condition status words (the page is organised by them).
    "Ready",
    "Progressing",
    "Reconciling",
    "Stalled",
    "Healthy",
    "DriftDetected",
    "MetricsAvailable",
    "PerformanceDegraded",
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
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(source_tree(path)):
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
    for path in sorted(OPERATOR.rglob("*.py")):
        for node in ast.walk(source_tree(path)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "Event"
                and node.args
            ):
                for reason in event_reason_words(node.args[0]):
                    found.setdefault(reason, set()).add(path.name)
    return found


def event_reason_words(node: ast.expr) -> list[str]:
    """An Event's reason as written: a literal, or a member of vigil.core.vocabulary."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        words = getattr(vocabulary, node.value.id, None)
        if isinstance(words, type) and issubclass(words, enum.StrEnum):
            return [str(words[node.attr])]
    return []


def test_every_reason_of_the_vocabulary_is_in_troubleshooting() -> None:
    missing = sorted(str(reason) for reason in vocabulary.Reason if reason not in documented())
    assert not missing, (
        f"vigil.core.vocabulary.Reason words not explained in docs/troubleshooting.md: {missing}"
    )


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


def test_every_runbook_link_of_the_alerts_has_its_anchor() -> None:
    linked: dict[str, set[str]] = {}
    for path in sorted((ROOT / "manifests").rglob("*.yaml")):
        for anchor in re.findall(r"troubleshooting\.md#([A-Za-z0-9_-]+)", path.read_text()):
            linked.setdefault(anchor, set()).add(str(path.relative_to(ROOT)))
    assert linked, "no alert in manifests/ links to docs/troubleshooting.md any more"
    anchors = doc_pages.anchors(PAGE.read_text())
    missing = {a: sorted(p) for a, p in linked.items() if a not in anchors}
    assert not missing, f"runbook anchors missing from docs/troubleshooting.md: {missing}"


# -- the page against what the code does (tests/unit/docs/code_catalogue.py) -------------


def page_tables() -> list[doc_pages.Table]:
    return doc_pages.tables(PAGE.read_text())


def reason_rows(table: doc_pages.Table) -> list[tuple[list[str], tuple[str, ...]]]:
    return [(doc_pages.words(row[0]), row) for row in table.rows]


def test_every_reason_the_page_lists_is_one_the_code_writes() -> None:
    seen = catalogue()
    listed = {
        word
        for table in page_tables()
        if table.header[0] == "reason"
        for words, _ in reason_rows(table)
        for word in words
    }
    assert "CheckFailed" in listed, "the page's reason tables were not found"
    unknown = sorted(listed - seen.reasons)
    assert not unknown, (
        f"docs/troubleshooting.md lists reasons the operator never writes: {unknown}"
    )


BOTH = ("Ready", "Progressing")
#: A claim: condition type, status (None: any), with steps (None: with or without).
Claim = tuple[str, str | None, bool | None]
CLAIM = re.compile(
    r"(both|Ready|Progressing)(?:\s+(True|False|Unknown))?(?:\s+(with|without) steps)?"
)


def claimed_conditions(cell: str) -> list[Claim]:
    """'Ready False; Progressing True without steps' -> [("Ready", "False", None), ...]."""
    claims: list[Claim] = []
    for part in cell.split(";"):
        match = CLAIM.fullmatch(part.strip())
        assert match, (
            f"condition cell {cell!r}: write both|Ready|Progressing [status] [with|without steps]"
        )
        kinds = BOTH if match.group(1) == "both" else (match.group(1),)
        steps = None if match.group(3) is None else match.group(3) == "with"
        claims += [(kind, match.group(2), steps) for kind in kinds]
    return claims


def test_ready_and_progressing_reasons_sit_on_the_conditions_the_page_says() -> None:
    """Each row says on which condition its reason appears, and when; the code must agree.

    A claim without "with/without steps" holds whenever the reason appears at all.
    """
    seen = catalogue().rollout_conditions
    table = next(t for t in page_tables() if t.heading == "Ready and Progressing")
    rollout_reasons = {
        word
        for table in page_tables()
        if table.heading == "Rollout steps" and table.header[0] == "reason"
        for words, _ in reason_rows(table)
        for word in words
    }
    wrong = []
    claims: dict[str, list[Claim]] = {}
    for words, row in reason_rows(table):
        (reason,) = words
        claims[reason] = claimed_conditions(row[1])
        contexts = {stepped for kind, _, r, stepped in seen if r == reason and kind in BOTH}
        for kind, status, steps in claims[reason]:
            for stepped in contexts if steps is None else {steps}:
                if not any(
                    (k, r, st) == (kind, reason, stepped) and status in (None, s)
                    for k, s, r, st in seen
                ):
                    when = "with" if stepped else "without"
                    wrong.append(f"{reason}: not on {kind} {status or ''} {when} steps")
    for kind, status, reason, stepped in sorted(seen):
        if kind not in BOTH or (kind == "Progressing" and reason in rollout_reasons and stepped):
            continue  # Progressing carries a stepped rollout's own reasons (Rollout steps)
        if not any(
            k == kind and s in (None, status) and st in (None, stepped)
            for k, s, st in claims.get(reason, ())
        ):
            when = "with" if stepped else "without"
            wrong.append(f"{reason}: set on {kind} {status} {when} steps, the table does not say")
    assert not wrong, "docs/troubleshooting.md, 'Ready and Progressing':\n" + "\n".join(wrong)


CAMEL_WORD = re.compile(r"\b(?=\w*[a-z])[A-Z]\w*[A-Z]\w*\b")
HEALTH_CONDITIONS = ("Healthy", "DriftDetected", "MetricsAvailable")


def test_each_health_section_names_a_reason_of_its_condition() -> None:
    seen = {(kind, reason) for kind, _, reason in catalogue().conditions}
    wrong, checked = [], 0
    for parent, title in doc_pages.headings(PAGE.read_text(), 3):
        if parent not in HEALTH_CONDITIONS:
            continue
        head, _, inside = title.partition("(")
        kinds = CAMEL_WORD.findall(inside) or [parent]
        for reason in CAMEL_WORD.findall(head):
            checked += 1
            wrong += [f"{kind} {reason}" for kind in kinds if (kind, reason) not in seen]
    assert checked >= 8, "the health sections were not found"
    assert not wrong, (
        f"docs/troubleshooting.md has sections for reasons the code never sets: {wrong}"
    )


def test_the_events_table_lists_every_event_with_its_type() -> None:
    posted = catalogue().events
    table = next(t for t in page_tables() if t.heading == "Events")
    listed: dict[str, set[str]] = {}
    for words, row in reason_rows(table):
        for reason in words:
            listed[reason] = set(re.findall(r"Warning|Normal", row[1]))
    wrong = [
        f"{reason}: documented {sorted(types)}, posted {sorted(posted.get(reason, ()))}"
        for reason, types in sorted(listed.items())
        if not posted.get(reason) or not posted[reason] <= types
    ]
    missing = sorted(set(posted) - set(listed))
    assert not wrong, f"docs/troubleshooting.md, Events, wrong rows: {wrong}"
    assert not missing, f"Events the operator posts, missing from the Events table: {missing}"


def test_every_event_in_the_source_is_reached_by_the_catalogue() -> None:
    # The catalogue runs scenarios; a new Event in the code must get one there.
    unreached = {
        reason: files
        for reason, files in posted_event_reasons().items()
        if reason not in catalogue().events
    }
    assert not unreached, (
        f"Events in the source that tests/unit/docs/code_catalogue.py never saw posted: "
        f"{unreached}; add a scenario that posts them"
    )


def listed_after(label: str) -> set[str]:
    """The backquoted words of the sentence after ``label`` (`status.health.verdict`: ...)."""
    text = doc_pages.prose(PAGE.read_text(), spans=True)
    match = re.search(re.escape(label) + r"`?:(.*?)\.(?:\s|$)", text)
    assert match, f"docs/troubleshooting.md: no list after {label!r}"
    return set(doc_pages.words(match.group(1)))


def test_phases_outcomes_and_verdicts_are_the_codes() -> None:
    seen = catalogue()
    table = next(t for t in page_tables() if t.header[0] == "phase")
    phases = {word for cell in table.column("phase") for word in doc_pages.words(cell)}
    assert phases == seen.phases
    assert listed_after("status.history[].outcome") == seen.outcomes
    assert listed_after("status.health.verdict") == seen.verdicts
