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

from typing import Any

from kit.kube import ROOT, Kube
from kit.operator import OperatorProcess, kubectl_vigil
from kit.status import Status, status
from kit.waits import wait_status

EXAMPLES = ROOT / "manifests" / "examples"


def promote(kube: Kube, version: str) -> None:
    kubectl_vigil(kube, "promote")
    wait_status(
        kube,
        lambda s: (s.get("stable") or {}).get("modelVersion") == version and not s.get("candidate"),
        90,
        f"model version {version} promoted",
    )


def candidate_of(kube: Kube, change: str) -> dict[str, Any]:
    """The candidate of a ``change`` (replacement, tweak), once the operator made one."""

    def made(current: Status) -> bool:
        return (current.get("candidate") or {}).get("change") == change

    return dict(wait_status(kube, made, 60, f"the {change}'s candidate")["candidate"])


def test_examples_applied_in_order_are_a_new_model_a_replacement_and_a_tweak(
    kube: Kube, operator: OperatorProcess
) -> None:
    # As manifests/README.md says: the keys first (kwok's pods fetch nothing with them).
    kube.run(
        "create", "secret", "generic", "wine-artifacts",
        "--from-literal=AWS_ACCESS_KEY_ID=reader", "--from-literal=AWS_SECRET_ACCESS_KEY=secret",
    )  # fmt: skip
    kube.run("apply", "-k", str(EXAMPLES / "new-model"))
    kube.wait_ready("md/wine", timeout=90)
    assert status(kube)["stable"]["modelVersion"] == "1"

    kube.run("apply", "-k", str(EXAMPLES / "replacement"))
    replacement = candidate_of(kube, "replacement")
    assert replacement["modelVersion"] == "2"
    assert replacement.get("stepName", "").startswith("validate"), replacement
    promote(kube, "2")

    kube.run("apply", "-k", str(EXAMPLES / "tweak"))
    tweak = candidate_of(kube, "tweak")
    assert tweak["modelVersion"] == "2"
    assert tweak.get("stepName", "").startswith("canary"), tweak
    promote(kube, "2")

    reasons = {event.get("reason") for event in kube.events()}
    assert "InvalidSpec" not in reasons, reasons
    outcomes = [(e.get("change"), e.get("outcome")) for e in status(kube).get("history") or []]
    assert ("tweak", "Promoted") in outcomes and ("replacement", "Promoted") in outcomes, outcomes
    operator.assert_no_errors()
