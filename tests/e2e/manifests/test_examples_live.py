"""The three examples, applied in order with `kubectl apply -k`, are the three kinds of change.

A real operator (its ServiceAccount's token only) watches a fresh namespace;
the examples are applied exactly as manifests/README.md says. The pods are
kwok's (no processes), so no rollout step can be judged: the candidate
holds (its sidecar never answers ready) and a person promotes it with
`kubectl vigil promote`, as they could in production. What this shows is
that the examples are accepted by the operator (reference profiles and the
golden set found, no InvalidSpec) and classified as intended: new model,
replacement with its policy, tweak with its own.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from operator_e2e import ROOT, Kube, OperatorProcess, kubectl_vigil, wait_for

EXAMPLES = ROOT / "manifests" / "examples"
BIN = Path(sys.executable).parent


def status(kube: Kube) -> dict[str, Any]:
    return (kube.get("md", "wine") or {}).get("status") or {}


def candidate(kube: Kube) -> dict[str, Any]:
    return status(kube).get("candidate") or {}


def promote(kube: Kube, version: str) -> None:
    kubectl_vigil(kube, "promote")
    wait_for(
        lambda: (
            status(kube).get("stable", {}).get("modelVersion") == version
            and not status(kube).get("candidate")
        ),
        timeout=90,
        what=f"model version {version} promoted",
    )


def test_examples_applied_in_order_are_a_new_model_a_replacement_and_a_tweak(
    kube: Kube, operator: OperatorProcess
) -> None:
    kube.run("apply", "-k", str(EXAMPLES / "new-model"))
    kube.run("wait", "--for=condition=Ready", "md/wine", "--timeout=90s")
    assert status(kube)["stable"]["modelVersion"] == "1"

    kube.run("apply", "-k", str(EXAMPLES / "replacement"))
    replacement = wait_for(
        lambda: candidate(kube).get("change") == "replacement" and candidate(kube),
        timeout=60,
        what="the replacement's candidate",
    )
    assert replacement["modelVersion"] == "2"
    assert replacement.get("stepName", "").startswith("validate"), replacement
    promote(kube, "2")

    kube.run("apply", "-k", str(EXAMPLES / "tweak"))
    tweak = wait_for(
        lambda: candidate(kube).get("change") == "tweak" and candidate(kube),
        timeout=60,
        what="the tweak's candidate",
    )
    assert tweak["modelVersion"] == "2"
    assert tweak.get("stepName", "").startswith("canary"), tweak
    promote(kube, "2")

    reasons = {event.get("reason") for event in kube.events()}
    assert "InvalidSpec" not in reasons, reasons
    outcomes = [(e.get("change"), e.get("outcome")) for e in status(kube).get("history") or []]
    assert ("tweak", "Promoted") in outcomes and ("replacement", "Promoted") in outcomes, outcomes
    operator.assert_no_errors()
