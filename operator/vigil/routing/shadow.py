"""Shadow traffic: the stable pods' sidecars copy live requests to the candidate.

No live traffic reaches the candidate: clients keep talking to the stable,
whose sidecar (after answering) sends a copy of ``percent`` % of the
successful inference requests to the candidate's per-revision Service
``<name>-<candidate>`` and compares the two predictions (metrics
``vigil_shadow_*`` labelled with ``target_revision``).

The reconcile writes the block (vigil.core.shadow builds it and rewrites the
settings); these functions check a block against the sidecar's own settings
parser, for the tests and the gate simulation. It is a run-time change of
the stable revision's sidecar settings (the
``shadow`` block of ``sidecar.json`` in ConfigMap
``<name>-<stable>-sidecar``; docs/sidecar.md): the sidecar re-reads it
within seconds, no pod restarts, and ``shadow`` is not part of the revision
hash. Everything here is pure over the ConfigMap's data; the reconciler
applies the resulting ConfigMap as it applies every other child (a
Kubernetes ConfigMap volume update takes up to the kubelet's sync period,
about a minute, to reach the pod).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from vigil.core.desired import SIDECAR_CONFIG_KEY, with_applied_hash
from vigil.core.rollout import Tolerance, Traffic
from vigil.core.shadow import render_settings
from vigil.routing.base import RoutingError, RoutingTarget


def shadow_block(
    target: RoutingTarget,
    percent: float,
    *,
    tolerance: Tolerance | None = None,
    timeout_seconds: float | None = None,
    target_url: str | None = None,
) -> dict[str, Any]:
    """The sidecar's ``shadow`` settings that copy ``percent`` % of requests to the candidate.

    ``target_url`` overrides the candidate's address (default: its per-revision
    Service, ``http://<name>-<candidate>.<namespace>.svc:80``), for clusters
    without Service networking (the local dev cluster runs pods on loopback IPs).
    """
    if target.candidate is None:
        raise RoutingError("shadow needs a candidate revision")
    if not 0 < percent <= 100:
        raise RoutingError(f"shadow percent must be within (0, 100], got {percent}")
    block: dict[str, Any] = {
        "target": target_url or target.revision_url(target.candidate),
        "targetRevision": target.candidate,
        "percent": percent,
    }
    if tolerance is not None:
        block.update(tolerance.sidecar_settings())
    if timeout_seconds is not None:
        block["timeoutSeconds"] = timeout_seconds
    return block


def shadow_for(
    target: RoutingTarget,
    traffic: Traffic,
    *,
    target_url: str | None = None,
) -> dict[str, Any] | None:
    """The stable's ``shadow`` block for this traffic: None when nothing is mirrored."""
    if target.candidate is None or traffic.shadow_percent <= 0:
        return None
    return shadow_block(
        target, traffic.shadow_percent, tolerance=traffic.shadow_tolerance, target_url=target_url
    )


def with_shadow(data: Mapping[str, str], shadow: Mapping[str, Any] | None) -> dict[str, str]:
    """ConfigMap data with the sidecar settings' ``shadow`` block set (None removes it).

    Raises RoutingError when the data holds no readable settings or the
    resulting settings would be rejected by the sidecar (vigil.sidecar.config).
    """
    from vigil.sidecar.config import ConfigError, settings_from_mapping

    raw = data.get(SIDECAR_CONFIG_KEY)
    if raw is None:
        raise RoutingError(f"the sidecar ConfigMap has no key {SIDECAR_CONFIG_KEY}")
    try:
        settings = json.loads(raw)
    except ValueError as error:
        raise RoutingError(f"{SIDECAR_CONFIG_KEY} is not JSON: {error}") from error
    if not isinstance(settings, dict):
        raise RoutingError(f"{SIDECAR_CONFIG_KEY} must hold an object")
    settings["shadow"] = dict(shadow) if shadow is not None else None
    try:
        settings_from_mapping(settings)
    except ConfigError as error:
        raise RoutingError(f"the sidecar would reject these settings: {error}") from error
    out = dict(data)
    out[SIDECAR_CONFIG_KEY] = render_settings(settings)
    return out


def without_shadow(data: Mapping[str, str]) -> dict[str, str]:
    """ConfigMap data with shadow copies switched off (``shadow: null``)."""
    return with_shadow(data, None)


def read_shadow(data: Mapping[str, str]) -> dict[str, Any] | None:
    """The ``shadow`` block currently in the ConfigMap data (None = off)."""
    raw = data.get(SIDECAR_CONFIG_KEY)
    if raw is None:
        return None
    shadow = json.loads(raw).get("shadow")
    return dict(shadow) if shadow else None


def shadow_configmap(
    manifest: Mapping[str, Any], shadow: Mapping[str, Any] | None
) -> dict[str, Any]:
    """A desired sidecar ConfigMap manifest with ``shadow`` set, its applied hash re-stamped.

    The reconciler calls this on the stable revision's desired ConfigMap
    (``vigil.core.desired.desired_configmap``) before applying it.
    """
    out = copy.deepcopy(dict(manifest))
    out["data"] = with_shadow(manifest.get("data") or {}, shadow)
    return with_applied_hash(out)
