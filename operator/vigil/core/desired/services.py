"""The Services: live traffic to the serving revision (``<name>``), one revision
(``<name>-<revision>``), and the sidecars' peers (``<name>-peers``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vigil.core import naming
from vigil.core.desired.meta import Owner, head, metadata, with_applied_hash
from vigil.core.desired.pod import (
    FEEDBACK_PORT,
    FEEDBACK_PORT_NAME,
    SERVICE_PORT,
    SIDECAR_PORT_NAME,
)


def _service(
    owner: Owner,
    name: str,
    labels: Mapping[str, str],
    selector: Mapping[str, str],
    extra_ports: tuple[dict[str, Any], ...] = (),
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A ClusterIP Service on the sidecars' port."""
    return with_applied_hash(
        {
            **head("v1", "Service", metadata(owner, name, labels, annotations)),
            "spec": {
                "type": "ClusterIP",
                "selector": dict(selector),
                "ports": [
                    {
                        "name": SIDECAR_PORT_NAME,
                        "port": SERVICE_PORT,
                        "targetPort": SIDECAR_PORT_NAME,
                        "protocol": "TCP",
                        "appProtocol": "http",
                    },
                    *extra_ports,
                ],
            },
        }
    )


#: Labels reach the model's pods through its Service, on their own port.
_FEEDBACK_SERVICE_PORT = {
    "name": FEEDBACK_PORT_NAME,
    "port": FEEDBACK_PORT,
    "targetPort": FEEDBACK_PORT_NAME,
    "protocol": "TCP",
    "appProtocol": "http",
}


def desired_service(
    owner: Owner,
    serving_revision: str,
    selector: Mapping[str, str] | None = None,
    serving_mark: str | None = None,
) -> dict[str, Any]:
    """The Service carrying live traffic to the serving revision's sidecars.

    ``selector`` overrides the serving revision's (a router spanning the
    stable's and the candidate's pods during a canary); ``serving_mark``: which
    revision took all live traffic last, and when (None: not marked).
    """
    mark = {naming.ANNOTATION_SERVING_SINCE: serving_mark} if serving_mark else None
    return _service(
        owner,
        naming.service_name(owner.name),
        naming.child_labels(owner.name, naming.ROLE_SERVING),
        selector or naming.selector_labels(owner.name, serving_revision),
        (dict(_FEEDBACK_SERVICE_PORT),),
        mark,
    )


def desired_revision_service(owner: Owner, revision: str, role: str) -> dict[str, Any]:
    """The per-revision Service ``<name>-<revision>``: only that revision's sidecars.

    Gateway API backends, shadow copies and golden replays address one
    revision through it, independently of pods coming and going.
    """
    return _service(
        owner,
        naming.deployment_name(owner.name, revision),
        naming.child_labels(owner.name, role, revision),
        naming.selector_labels(owner.name, revision),
    )


def desired_peers_service(owner: Owner) -> dict[str, Any]:
    """The headless Service ``<name>-peers``: every pod of the ModelDeployment, any revision.

    The sidecars resolve it to find each other: a label that reaches one pod is
    joined at the pod that holds its prediction, and a stopping pod hands its
    predictions to the others. Not-ready pods are listed too: a readiness flap
    must not hide the predictions a pod holds.
    """
    return with_applied_hash(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(
                owner,
                naming.peers_service_name(owner.name),
                naming.child_labels(owner.name, naming.ROLE_SERVING),
            ),
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,
                "selector": {naming.LABEL_MODEL_DEPLOYMENT: owner.name},
                "ports": [{**_FEEDBACK_SERVICE_PORT}],
            },
        }
    )
