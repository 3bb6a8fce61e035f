"""Model pods without the operator: MLServer behind the real sidecar, as plain objects.

For the tests of the metrics sources, Prometheus and the dashboard on their
own: with ``space`` (``kit.incluster.RealNamespace``) real containers on the
real node, of the images built here, the model from the namespace's volume,
passing PodSecurity ``restricted``; without, kwok pods for the workload
runner, which runs their containers as local processes on the pods' IPs.
"""

from __future__ import annotations

import json
from typing import Any

from kit.incluster import CLAIM, RealNamespace
from kit.kube import MD_LABEL, REVISION_LABEL, configmap
from kit.modeldeployment import MLSERVER_IMAGE, SERVER_RESOURCES
from vigil.core.desired import SIDECAR_READY_PATH, SIDECAR_SCRATCH_DIR
from vigil.devcluster.models import TrainedModel

SIDECAR_IMAGE = "ghcr.io/vigil-dev/vigil:0.1.0"
#: What PodSecurity ``restricted`` asks of every container.
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
SIDECAR_USER = 65532  # the vigil image's USER


def sidecar_settings(
    revision: str = "r1",
    *,
    log_level: str = "info",
    shadow: dict[str, Any] | None = None,
    feedback_task: str | None = None,
) -> str:
    """The sidecar's settings file: model wine v1 at the pod's own MLServer.

    With ``feedback_task`` ("" for the model's own task) its feedback port takes labels.
    """
    settings: dict[str, Any] = {
        "model": {"name": "wine", "version": "1"},
        "revision": revision,
        "role": "stable",
        "protocol": "v2",
        "upstream": {"url": "http://127.0.0.1:8080"},
        "monitoring": {"referenceProfile": "/var/lib/vigil/reference/profile.json"},
        "logLevel": log_level,
    }
    if shadow:
        settings["shadow"] = shadow
    if feedback_task is not None:
        settings["feedback"] = {"enabled": True, "task": feedback_task}
    return json.dumps(settings)


def sidecar_configmap(name: str, settings: str) -> dict[str, Any]:
    """``<name>-sidecar``, the settings the Deployment ``name`` mounts."""
    return configmap(f"{name}-sidecar", {"sidecar.json": settings})


def reference_configmap(model: TrainedModel) -> dict[str, Any]:
    """``wine-reference``, the profile every Deployment here mounts."""
    return configmap("wine-reference", {"profile.json": model.profile_json()})


def deployment(
    name: str,
    model: TrainedModel,
    *,
    replicas: int = 1,
    revision: str | None = None,
    with_server: bool = True,
    space: RealNamespace | None = None,
) -> dict[str, Any]:
    """A Deployment of model pods (``vigil.dev/model-deployment=<name>``); without a
    server, every request its sidecar forwards fails upstream."""
    labels = {MD_LABEL: name} | ({REVISION_LABEL: revision} if revision else {})
    server: dict[str, Any] = {
        "name": "server",
        "image": MLSERVER_IMAGE,
        "env": [{"name": "STORAGE_URI", "value": model.storage_uri}],
        "ports": [{"name": "model", "containerPort": 8080}],
    }
    sidecar: dict[str, Any] = {
        "name": "sidecar",
        "image": SIDECAR_IMAGE,
        "command": ["vigil-sidecar", "--config", "/etc/vigil/sidecar.json"],
        "ports": [
            {"name": "http", "containerPort": 8000},
            {"name": "metrics", "containerPort": 9090},
            {"name": "feedback", "containerPort": 8001},
        ],
        "volumeMounts": [
            {"name": "sidecar-config", "mountPath": "/etc/vigil"},
            {"name": "reference", "mountPath": "/var/lib/vigil/reference"},
        ],
    }
    volumes: list[dict[str, Any]] = [
        {"name": "sidecar-config", "configMap": {"name": f"{name}-sidecar"}},
        {"name": "reference", "configMap": {"name": "wine-reference"}},
    ]
    if space is not None:
        path = str(model.folder.relative_to(space.folder))
        server |= {
            "image": space.server_image,
            "env": [{"name": "STORAGE_URI", "value": f"pvc://{CLAIM}/{path}"}],
            "volumeMounts": [
                {"name": "model", "mountPath": "/mnt/models", "subPath": path, "readOnly": True}
            ],
            "resources": SERVER_RESOURCES,
            "securityContext": RESTRICTED,
        }
        sidecar |= {
            "image": space.vigil_image,
            "securityContext": {**RESTRICTED, "runAsUser": SIDECAR_USER},
            "volumeMounts": [
                *sidecar["volumeMounts"],
                {"name": "sidecar-tmp", "mountPath": SIDECAR_SCRATCH_DIR},
            ],
        }
        if with_server:
            # Ready once the model server behind it is, as the operator's sidecars.
            sidecar["readinessProbe"] = {
                "httpGet": {"path": SIDECAR_READY_PATH, "port": "http"},
                "periodSeconds": 2,
            }
        volumes += [
            {"name": "model", "persistentVolumeClaim": {"claimName": CLAIM, "readOnly": True}},
            {"name": "sidecar-tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ]
    containers = [server, sidecar] if with_server else [sidecar]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": containers,
                    "volumes": volumes,
                },
            },
        },
    }
