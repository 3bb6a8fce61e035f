"""What every child manifest carries: its owner, its metadata, the applied hash.

Every manifest carries `vigil.dev/applied-hash`, a hash of the manifest
itself: comparing it with the live object's annotation tells whether a
write is needed without being fooled by the fields the API server defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vigil.common.objects import body, copied
from vigil.core import naming
from vigil.core.revision import canonical_hash


@dataclass(frozen=True)
class Owner:
    """The ModelDeployment that owns the children (for owner references and names)."""

    name: str
    namespace: str
    uid: str


@dataclass(frozen=True)
class RevisionInfo:
    """What a revision's objects record about themselves."""

    revision: str
    identity: str
    role: str


def owner_reference(owner: Owner) -> dict[str, Any]:
    """A controller owner reference: garbage collection removes the child with its parent."""
    return {
        "apiVersion": naming.API_VERSION,
        "kind": naming.KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(
    owner: Owner, name: str, labels: Mapping[str, str], annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": dict(labels),
        "ownerReferences": [owner_reference(owner)],
    }
    if annotations:
        metadata["annotations"] = dict(annotations)
    return metadata


def head(api_version: str, kind: str, metadata: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata}


def with_applied_hash(manifest: dict[str, Any]) -> dict[str, Any]:
    """Stamp a manifest with the hash of its own content (see the module docstring)."""
    stamped = copied(manifest)
    annotations = stamped["metadata"].setdefault("annotations", {})
    annotations.pop(naming.ANNOTATION_APPLIED_HASH, None)
    annotations[naming.ANNOTATION_APPLIED_HASH] = canonical_hash(stamped, length=16)
    return stamped


def needs_write(desired: Mapping[str, Any], actual: Mapping[str, Any] | None) -> bool:
    """Whether the live object differs from the desired one in anything Vigil sets.

    The applied hash catches every change of the desired manifest; the direct
    checks catch what others may have changed on the live object (a manual
    `kubectl scale`, an edited selector or ConfigMap, a stripped label).
    """
    if actual is None:
        return True
    live = body(actual)
    desired_meta = desired["metadata"]
    applied = desired_meta["annotations"][naming.ANNOTATION_APPLIED_HASH]
    if live.meta.annotations.get(naming.ANNOTATION_APPLIED_HASH) != applied:
        return True
    if any(live.meta.labels.get(key) != value for key, value in desired_meta["labels"].items()):
        return True
    if not live.meta.owned_by(desired_meta["ownerReferences"][0]["uid"]):
        return True
    kind = desired["kind"]
    if kind == "Deployment":
        return live.spec.get("replicas") != desired["spec"]["replicas"]
    if kind == "Service":
        return live.spec.get("selector") != desired["spec"]["selector"]
    if kind == "ConfigMap":
        return live.data != desired["data"]
    return False
