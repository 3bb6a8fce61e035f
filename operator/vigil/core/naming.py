"""Names and labels of the objects a ModelDeployment owns.

Names are deterministic (a retry after a failed write finds the object it
created instead of creating a twin), and labels are the project's own, never
copies of the parent's labels: a GitOps tool that tracks the parent by label
must not claim the children as its own.
"""

from __future__ import annotations

import re

GROUP = "vigil.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"

LABEL_MODEL_DEPLOYMENT = "vigil.dev/model-deployment"
LABEL_REVISION = "vigil.dev/revision"
LABEL_ROLE = "vigil.dev/role"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "vigil-operator"

ANNOTATION_APPLIED_HASH = "vigil.dev/applied-hash"
ANNOTATION_IDENTITY = "vigil.dev/identity"
ANNOTATION_MODEL_VERSION = "vigil.dev/model-version"
ANNOTATION_IMAGE = "vigil.dev/image"
#: On the pod template: a digest of the reference profile the sidecars read at their start.
ANNOTATION_REFERENCE_DIGEST = "vigil.dev/reference-digest"
#: On a previous revision kept for a bake: "<promoted revision> <start>", written with the
#: switch, so a switch whose status write was lost resumes the bake from its start.
ANNOTATION_KEPT_FOR_BAKE = "vigil.dev/kept-for-bake"
#: On the Service ``<name>``: "<revision> <time>", the revision it last moved all live traffic
#: to and when (a canary's selector leaves it), so a switch whose status write was lost is
#: dated right.
ANNOTATION_SERVING_SINCE = "vigil.dev/serving-since"
#: On a stepped candidate's Deployment, written with its rollback (or failure): "<action>
#: <attempt start> <step> <reason> <words>". Its status write lost after the Event, the next
#: cycle ends the attempt the same way (reconcile.rollback.ended_unrecorded), not judged again.
ANNOTATION_ENDED = "vigil.dev/ended"
#: On a revision's Deployment: a copy of its sidecar settings, from which its ConfigMap is
#: made again while the spec renders another revision (during a rollout).
ANNOTATION_SIDECAR_SETTINGS = "vigil.dev/sidecar-settings"

# Roles: the Deployment (and its settings ConfigMap) serving live traffic, the
# one being rolled out, and the Service carrying live traffic.
ROLE_STABLE = "stable"
ROLE_CANDIDATE = "candidate"
ROLE_SERVING = "serving"

# A Service name and a label value are limited to 63 characters; a Service
# name must also be a DNS-1035 label (start with a letter, no dots).
MAX_LABEL_LENGTH = 63
_DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

SIDECAR_CONFIG_SUFFIX = "sidecar"


def service_name(name: str) -> str:
    """The Service carrying live traffic has the ModelDeployment's own name."""
    return name


def peers_service_name(name: str) -> str:
    """The headless Service through which a ModelDeployment's sidecars find each other."""
    return f"{name}-peers"


def deployment_name(name: str, revision: str) -> str:
    """One Deployment per revision, so two revisions can run side by side."""
    return f"{name}-{revision}"


def sidecar_configmap_name(name: str, revision: str) -> str:
    """One sidecar settings ConfigMap per revision (its content names the revision)."""
    return f"{name}-{revision}-{SIDECAR_CONFIG_SUFFIX}"


def selector_labels(name: str, revision: str) -> dict[str, str]:
    """Pod labels that identify one revision's pods (immutable Deployment selector)."""
    return {LABEL_MODEL_DEPLOYMENT: name, LABEL_REVISION: revision}


def child_labels(name: str, role: str, revision: str | None = None) -> dict[str, str]:
    """Labels of an owned object: which ModelDeployment, which revision, which role."""
    labels = {LABEL_MODEL_DEPLOYMENT: name, LABEL_ROLE: role, LABEL_MANAGED_BY: MANAGED_BY}
    if revision is not None:
        labels[LABEL_REVISION] = revision
    return labels


def name_problem(name: str, revision_length: int) -> str | None:
    """Why `name` cannot name the children, or None when it can.

    The schema cannot check this (metadata.name is validated by the API server
    as a DNS subdomain, up to 253 characters, dots allowed), so it becomes a
    condition on the object instead of a crash loop.
    """
    if not _DNS_1035_LABEL.match(name):
        return (
            f"name {name!r} cannot name a Service: use lower-case letters, digits and '-', "
            "starting with a letter (no dots)"
        )
    longest = len(sidecar_configmap_name(name, "x" * revision_length))
    if len(deployment_name(name, "x" * revision_length)) > MAX_LABEL_LENGTH:
        limit = MAX_LABEL_LENGTH - revision_length - 1
        return (
            f"name {name!r} is {len(name)} characters long; a ModelDeployment's name can have "
            f"at most {limit} so that its Deployments ('<name>-<revision>') stay within "
            f"{MAX_LABEL_LENGTH} characters"
        )
    if longest > 253:  # pragma: no cover - implied by the check above
        return f"name {name!r} is too long for the sidecar ConfigMap"
    return None
