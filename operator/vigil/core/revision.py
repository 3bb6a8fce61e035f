"""Revisions and change kinds.

A revision is a short hash of everything that shapes the serving pods: the
model identity, the server container, the config handed to it, the
monitoring settings that reach the sidecar, and the sidecar image itself.
`replicas` and `rollout` are deliberately left out: scaling is done in place
and a rollout policy does not change what runs.

The change kind is decided against the stable revision (api.md): the
model's identity (name, version, uri, sha256) or `server.image` differ ->
replacement; anything else that changes the revision (the model's path, the
store, the fetch settings...) -> tweak; no stable revision yet -> new.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from vigil.core.spec import DEFAULT_MODEL_PATH, ModelDeploymentSpec
from vigil.core.vocabulary import ChangeKind

REVISION_LENGTH = 7


def canonical_hash(value: Any, length: int = REVISION_LENGTH) -> str:
    """A short, stable hash of JSON-able data (key order and spacing do not matter)."""
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(encoded.encode()).hexdigest()[:length]


def identity_inputs(spec: ModelDeploymentSpec) -> dict[str, Any]:
    """What makes a revision a different model: the artifact and the server image.

    The digest only when set: a ModelDeployment without one keeps the revision
    it had before the field existed (no rollout of everything on an upgrade).
    """
    model: dict[str, Any] = {
        "name": spec.model.name,
        "version": spec.model.version,
        "uri": spec.model.uri,
    }
    if spec.model.sha256:
        model["sha256"] = spec.model.sha256
    return {"model": model, "image": spec.server.image}


def artifact_inputs(spec: ModelDeploymentSpec) -> dict[str, Any] | None:
    """How the pods get the model: the path, and for a fetched URI the store and the fetch.

    None for a pod layout that existed before these fields (no URI Vigil
    places, or a pvc:// at the default path), so those revisions stay. A
    fetched URI always has inputs: its pods gained an init container.
    The Secret is named, never read: rotating its keys rolls nothing.
    """
    model = spec.model
    if not model.fetched and (model.pvc is None or model.path == DEFAULT_MODEL_PATH):
        return None
    inputs: dict[str, Any] = {"path": model.path}
    if model.fetched:
        inputs["fetch"] = {"storage": model.storage.inputs(), **model.fetch.inputs()}
    return inputs


def pod_shaping_inputs(spec: ModelDeploymentSpec, sidecar_image: str) -> dict[str, Any]:
    """Everything that ends up in the pod template or in the sidecar's settings."""
    server = spec.server
    reference = spec.monitoring.reference
    return {
        **identity_inputs(spec),
        "server": {
            "port": server.port,
            "protocol": server.protocol,
            "readinessPath": server.readiness_path,
            "command": list(server.command),
            "args": list(server.args),
            "env": [dict(item) for item in server.env],
            "resources": dict(server.resources),
            # Only when set: revisions from before the field stay what they were.
            **({"readOnlyRootFilesystem": True} if server.read_only_root_filesystem else {}),
        },
        "config": dict(spec.config),
        "monitoring": {
            "reference": None
            if reference is None
            else {"name": reference.name, "key": reference.key},
            "maxBodyBytes": spec.monitoring.sidecar.max_body_bytes,
            "featureCap": spec.monitoring.sidecar.feature_cap,
        },
        "sidecarImage": sidecar_image,
        **({"artifact": artifact} if (artifact := artifact_inputs(spec)) else {}),
    }


def compute_revision(spec: ModelDeploymentSpec, sidecar_image: str) -> str:
    """The revision name of a spec: equal inputs give the same revision, always."""
    return canonical_hash(pod_shaping_inputs(spec, sidecar_image))


def compute_identity(spec: ModelDeploymentSpec) -> str:
    """A hash of the model identity, recorded on each revision's Deployment."""
    return canonical_hash(identity_inputs(spec), length=16)


def classify_change(
    *,
    stable_revision: str | None,
    stable_identity: str | None,
    desired_revision: str,
    desired_identity: str,
) -> ChangeKind | None:
    """The kind of change from the stable revision to the desired one (None: no change)."""
    if stable_revision is None:
        return ChangeKind.NEW
    if stable_revision == desired_revision:
        return None
    if stable_identity != desired_identity:
        # An unknown stable identity (an object from before identities were
        # recorded) counts as a replacement: the cautious policy.
        return ChangeKind.REPLACEMENT
    return ChangeKind.TWEAK
