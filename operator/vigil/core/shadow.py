"""The stable sidecars' ``shadow`` settings: the one place they are built and written.

During a shadow step the stable revision's sidecars copy live requests to
the candidate and compare the answers. That is a run-time setting of the
stable's sidecar (the ``shadow`` block of ``sidecar.json`` in its settings
ConfigMap, docs/sidecar.md): the sidecar re-reads it, no pod restarts, and
it is not part of the revision. The reconcile writes it
(:mod:`vigil.core.reconcile.shadow`); vigil.routing.shadow checks a block
against the sidecar's own settings parser.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from vigil.core.rollout import Traffic
from vigil.core.spec import ModelDeploymentSpec


def shadow_settings(target: str, candidate: str, traffic: Traffic) -> dict[str, Any] | None:
    """The ``shadow`` block that copies ``traffic.shadow_percent`` % to ``target`` (None: off)."""
    if traffic.shadow_percent <= 0:
        return None
    block: dict[str, Any] = {
        "target": target,
        "targetRevision": candidate,
        "percent": traffic.shadow_percent,
    }
    if traffic.shadow_tolerance is not None:
        block.update(traffic.shadow_tolerance.sidecar_settings())
    return block


def spec_task(spec: ModelDeploymentSpec) -> str:
    """The task the spec names ("": none): ``monitoring.performance.minAccuracy`` is a
    classifier's limit, ``maxMAE`` a regressor's (the spec takes one of them at most).

    The stable's sidecar is told it (``shadow.task``): without a reference profile it
    would otherwise guess from the answers, and a classifier answering P(class 1) per
    row reads as a regression (its scores compared as numbers, not decisions).
    """
    performance = spec.monitoring.performance
    if performance.min_accuracy is not None:
        return "classification"
    if performance.max_mae is not None:
        return "regression"
    return ""


def render_settings(settings: Mapping[str, Any]) -> str:
    """``sidecar.json`` as written: equal settings, equal bytes (and equal applied hashes)."""
    return json.dumps(settings, indent=2, sort_keys=True) + "\n"


def with_shadow(text: str, shadow: Mapping[str, Any] | None) -> str | None:
    """``sidecar.json`` text with its ``shadow`` block set (None removes it).

    None when the text holds no settings object, or when it already has this block.
    """
    try:
        settings = json.loads(text)
    except ValueError:
        return None
    wanted = dict(shadow) if shadow else None
    if not isinstance(settings, dict) or settings.get("shadow") == wanted:
        return None
    settings["shadow"] = wanted
    return render_settings(settings)
