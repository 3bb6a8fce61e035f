"""A revision's own objects: its Deployment, and the ConfigMap of its sidecar's settings."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from vigil.common import objects
from vigil.core import naming
from vigil.core.desired.meta import Owner, RevisionInfo, head, metadata, with_applied_hash
from vigil.core.desired.pod import (
    DEFAULT_PULL_POLICY,
    FEEDBACK_PORT,
    METRICS_PORT,
    REFERENCE_DIR,
    SIDECAR_CONFIG_KEY,
    SIDECAR_PORT,
    SIDECAR_SHUTDOWN_DELAY_SECONDS,
    pod_spec,
    progress_deadline_seconds,
)
from vigil.core.shadow import render_settings
from vigil.core.spec import ModelDeploymentSpec


def sidecar_settings(owner: Owner, spec: ModelDeploymentSpec, info: RevisionInfo) -> dict[str, Any]:
    """The sidecar's settings file (`vigil-sidecar --config /etc/vigil/sidecar.json`).

    The keys are the sidecar's contract (docs/sidecar.md, vigil.sidecar.config):
    the sidecar rejects unknown keys, so only documented ones are written.
    ``shadow`` is null here: the stable's copy-to-the-candidate block is a run-time
    setting the reconcile writes during a shadow step (vigil.core.reconcile.shadow),
    not part of the revision.
    """
    reference = spec.monitoring.reference
    monitoring: dict[str, Any] = {"maxFeatures": spec.monitoring.sidecar.feature_cap}
    if reference is not None:
        monitoring["referenceProfile"] = f"{REFERENCE_DIR}/{reference.key}"
    return {
        "model": {"name": spec.model.name, "version": spec.model.version},
        "revision": info.revision,
        "role": info.role,
        "protocol": spec.server.protocol,
        "upstream": {
            "url": f"http://127.0.0.1:{spec.server.port}",
            "readinessPath": spec.server.readiness_path,
        },
        "listen": {"port": SIDECAR_PORT},
        "metrics": {"port": METRICS_PORT},
        "limits": {"maxBodyBytes": spec.monitoring.sidecar.max_body_bytes},
        "monitoring": monitoring,
        "shadow": None,
        "shutdown": {"delaySeconds": SIDECAR_SHUTDOWN_DELAY_SECONDS},
        # The other pods of the ModelDeployment, any revision: a label joins where
        # its prediction is (desired_peers_service).
        "feedback": {
            "enabled": True,
            "port": FEEDBACK_PORT,
            "peers": [
                f"{naming.peers_service_name(owner.name)}.{owner.namespace}.svc:{FEEDBACK_PORT}"
            ],
        },
    }


def desired_configmap(
    owner: Owner, spec: ModelDeploymentSpec, info: RevisionInfo
) -> dict[str, Any]:
    """The ConfigMap holding one revision's sidecar settings."""
    return settings_configmap(owner, info, sidecar_settings(owner, spec, info))


def settings_configmap(
    owner: Owner, info: RevisionInfo, settings: Mapping[str, Any]
) -> dict[str, Any]:
    """A revision's settings ConfigMap with these ``settings`` (the spec's, or the copy its
    Deployment carries: :func:`kept_settings`)."""
    name = naming.sidecar_configmap_name(owner.name, info.revision)
    labels = naming.child_labels(owner.name, info.role, info.revision)
    return with_applied_hash(
        {
            **head("v1", "ConfigMap", metadata(owner, name, labels)),
            "data": {SIDECAR_CONFIG_KEY: render_settings(settings)},
        }
    )


def _settings_copy(owner: Owner, spec: ModelDeploymentSpec, info: RevisionInfo) -> str:
    """The copy of a revision's sidecar settings its Deployment carries (metadata only: no
    pod restarts), from which its ConfigMap is made again while the spec renders another
    revision (:func:`kept_settings`)."""
    return json.dumps(sidecar_settings(owner, spec, info), sort_keys=True, separators=(",", ":"))


def kept_settings(deployment: Mapping[str, Any]) -> dict[str, Any] | None:
    """The sidecar settings a live Deployment carries a copy of (None: none, or unreadable:
    rendered by an operator from before the copy)."""
    text = objects.body(deployment).meta.annotations.get(naming.ANNOTATION_SIDECAR_SETTINGS)
    try:
        settings = json.loads(text) if text else None
    except ValueError:
        return None
    return settings if isinstance(settings, dict) else None


def reference_digest(configmap: Mapping[str, Any] | None, key: str | None) -> str:
    """A short digest of the reference profile's text ("" without one)."""
    value = objects.body(configmap).value(key) if configmap is not None and key else None
    if value is None:
        return ""
    raw = value.encode() if isinstance(value, str) else value
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:16]


def desired_deployment(
    owner: Owner,
    spec: ModelDeploymentSpec,
    info: RevisionInfo,
    *,
    sidecar_image: str,
    replicas: int,
    reference_digest: str = "",
    sidecar_pull_policy: str = DEFAULT_PULL_POLICY,
) -> dict[str, Any]:
    """The Deployment running one revision: model server + sidecar in every pod.

    ``reference_digest``: of the reference profile the sidecars read at their start; an
    edited ConfigMap changes the pod template, so the pods are replaced in place.
    ``sidecar_pull_policy``: the operator's setting, not part of the revision (its hash):
    changing it replaces the pods in place too, without a rollout.
    """
    pod_labels = naming.selector_labels(owner.name, info.revision)
    annotations = {
        naming.ANNOTATION_IDENTITY: info.identity,
        naming.ANNOTATION_MODEL_VERSION: spec.model.version,
        naming.ANNOTATION_IMAGE: spec.server.image,
        naming.ANNOTATION_SIDECAR_SETTINGS: _settings_copy(owner, spec, info),
    }
    name = naming.deployment_name(owner.name, info.revision)
    labels = naming.child_labels(owner.name, info.role, info.revision)
    return with_applied_hash(
        {
            **head("apps/v1", "Deployment", metadata(owner, name, labels, annotations)),
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": pod_labels},
                "progressDeadlineSeconds": progress_deadline_seconds(spec),
                "revisionHistoryLimit": 2,
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
                },
                "template": {
                    "metadata": {
                        "labels": pod_labels,
                        "annotations": {
                            "prometheus.io/scrape": "true",
                            "prometheus.io/port": str(METRICS_PORT),
                            "prometheus.io/path": "/metrics",
                            **(
                                {naming.ANNOTATION_REFERENCE_DIGEST: reference_digest}
                                if reference_digest
                                else {}
                            ),
                        },
                    },
                    "spec": pod_spec(owner, spec, info, sidecar_image, sidecar_pull_policy),
                },
            },
        }
    )
