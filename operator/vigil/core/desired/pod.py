"""A revision's pods: the model server, the Vigil sidecar in front of it, the init
container that fetches the model, and the volumes they share."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from vigil.common import objects
from vigil.core import naming
from vigil.core.desired.meta import Owner, RevisionInfo
from vigil.core.spec import ModelDeploymentSpec

SIDECAR_CONTAINER = "sidecar"
SERVER_CONTAINER = "server"
SIDECAR_PORT = 8000
SIDECAR_PORT_NAME = "http"
METRICS_PORT = 9090
METRICS_PORT_NAME = "metrics"
#: Labels by request id (docs/howto/feedback.md), on the live Service too; its own
#: port so that a NetworkPolicy can let label pipelines in without the clients.
FEEDBACK_PORT = 8001
FEEDBACK_PORT_NAME = "feedback"
SERVER_PORT_NAME = "model"
SERVICE_PORT = 80

#: The imagePullPolicy the operator may give the containers running Vigil's image
#: (sidecar, vigil-fetch).
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
#: Set explicitly: Kubernetes' own default is Always for a `:latest` or untagged image,
#: which fails on a node that has the image but no registry serving it.
DEFAULT_PULL_POLICY = "IfNotPresent"

SIDECAR_CONFIG_DIR = "/etc/vigil"
SIDECAR_CONFIG_KEY = "sidecar.json"
SIDECAR_CONFIG_PATH = f"{SIDECAR_CONFIG_DIR}/{SIDECAR_CONFIG_KEY}"
REFERENCE_DIR = "/var/lib/vigil/reference"
#: The pod volume holding the reference profile (the rollout reads the stable's from it).
REFERENCE_VOLUME = "reference"
# The sidecar's only writable directory (its root file system is read-only);
# TMPDIR points there, so nothing needs a writable /tmp.
SIDECAR_SCRATCH_DIR = "/var/lib/vigil/tmp"
# The model (a pvc:// claim, or the folder vigil-fetch filled) is mounted read-only at
# spec.model.path in the server; the server also gets that path as MODEL_PATH.
MODEL_VOLUME = "vigil-model"
#: The init container that downloads an http(s):// or s3:// model into MODEL_VOLUME.
FETCH_CONTAINER = "vigil-fetch"
#: Where vigil-fetch finds a private CA (spec.model.storage.caConfigMapRef).
FETCH_CA_DIR = "/var/run/vigil/ca"
FETCH_CA_VOLUME = "vigil-fetch-ca"
#: The Secret's keys vigil-fetch reads (the names the AWS SDKs use); the token is optional.
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
S3_SESSION_TOKEN_KEY = "AWS_SESSION_TOKEN"
# A server with a read-only root file system (opt-in) still gets a writable /tmp.
SERVER_TMP_VOLUME = "server-tmp"
SERVER_TMP_SIZE = "1Gi"
SIDECAR_READY_PATH = "/healthz/ready"
SIDECAR_LIVE_PATH = "/healthz/live"
SIDECAR_USER_ID = 65532
# After SIGTERM the sidecar keeps serving (not ready) this long, so that a pod
# removed after a switch still answers requests routed before the endpoints moved.
SIDECAR_SHUTDOWN_DELAY_SECONDS = 5
# Every container of a terminating pod gets SIGTERM at once: without a pause the
# model server would stop while the sidecar still accepts (the requests of those
# seconds would fail). Its preStop sleep keeps it serving through the sidecar's
# delay and a margin for the requests still in flight when the sidecar closes.
SERVER_SHUTDOWN_DELAY_SECONDS = SIDECAR_SHUTDOWN_DELAY_SECONDS + 5
# A stopping sidecar at its defaults: its delay, the drain of requests in flight, then the
# feedback handoff's wait and send (half its timeout, then all of it), beyond Kubernetes'
# 30 s: killed mid-handoff, the pod's unlabelled predictions would be lost.
SIDECAR_DRAIN_SECONDS = 20
SIDECAR_HANDOFF_SECONDS = 5
TERMINATION_GRACE_SECONDS = (
    SIDECAR_SHUTDOWN_DELAY_SECONDS + SIDECAR_DRAIN_SECONDS + 2 * SIDECAR_HANDOFF_SECONDS + 5
)
PROGRESS_DEADLINE_SECONDS = 600


def progress_deadline_seconds(spec: ModelDeploymentSpec) -> int:
    """The Deployment's ``progressDeadlineSeconds``: 10 minutes, or for a model that
    vigil-fetch downloads ``spec.rollout.progressDeadline`` (a download may take longer;
    its progress shows in status, and docs/howto/model-artifacts.md promises that deadline)."""
    if spec.model.fetched:
        return max(1, math.ceil(spec.rollout.progress_deadline_seconds))
    return PROGRESS_DEADLINE_SECONDS


# The sidecar's own footprint: small and bounded, so that it never starves the model.
SIDECAR_RESOURCES: dict[str, Any] = {
    "requests": {"cpu": "50m", "memory": "64Mi"},
    "limits": {"memory": "256Mi"},
}


def _server_env(spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    """Operator-set variables, then config knobs, then the user's env (which wins).

    Names are unique: server-side apply treats `env` as a map keyed by name.
    """
    env: dict[str, dict[str, Any]] = {
        "MODEL_NAME": {"name": "MODEL_NAME", "value": spec.model.name},
        "MODEL_VERSION": {"name": "MODEL_VERSION", "value": spec.model.version},
    }
    if spec.model.uri:
        env["STORAGE_URI"] = {"name": "STORAGE_URI", "value": spec.model.uri}
    if spec.model.placed:
        env["MODEL_PATH"] = {"name": "MODEL_PATH", "value": spec.model.path}
    for key in sorted(spec.config):
        env[key] = {"name": key, "value": spec.config[key]}
    for item in spec.server.env:
        env[str(item["name"])] = copy.deepcopy(dict(item))
    return list(env.values())


def _restricted_security_context(*, read_only_root: bool) -> dict[str, Any]:
    """What PodSecurity `restricted` asks of every container."""
    context: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if read_only_root:
        context["readOnlyRootFilesystem"] = True
    return context


def _server_container(spec: ModelDeploymentSpec) -> dict[str, Any]:
    server = spec.server
    container: dict[str, Any] = {
        "name": SERVER_CONTAINER,
        "image": server.image,
        "ports": [{"name": SERVER_PORT_NAME, "containerPort": server.port, "protocol": "TCP"}],
        "env": _server_env(spec),
        # No probe of its own: the kubelet probes on the pod IP, and a server that
        # listens on 127.0.0.1 only (nothing can reach it around the sidecar) would
        # never pass. The sidecar's readiness asks the server's readinessPath over
        # loopback, so the pod is Ready exactly when the model is.
        # Model servers write caches and temporary files: their root stays writable
        # unless the spec says otherwise (then /tmp is, see _volumes).
        "securityContext": _restricted_security_context(
            read_only_root=server.read_only_root_filesystem
        ),
        # The kubelet's own sleep (Kubernetes 1.30+): no shell needed in the image.
        "lifecycle": {"preStop": {"sleep": {"seconds": SERVER_SHUTDOWN_DELAY_SECONDS}}},
    }
    if server.command:
        container["command"] = list(server.command)
    if server.args:
        container["args"] = list(server.args)
    if server.resources:
        container["resources"] = copy.deepcopy(dict(server.resources))
    mounts: list[dict[str, Any]] = []
    pvc = spec.model.pvc
    if spec.model.placed:
        mount = {"name": MODEL_VOLUME, "mountPath": spec.model.path, "readOnly": True}
        mounts.append({**mount, "subPath": pvc.path} if pvc is not None and pvc.path else mount)
    if server.read_only_root_filesystem:
        mounts.append({"name": SERVER_TMP_VOLUME, "mountPath": "/tmp"})
    if mounts:
        container["volumeMounts"] = mounts
    return container


def _vigil_security_context() -> dict[str, Any]:
    """Vigil's own containers (sidecar, fetch): restricted, read-only root, the image's user."""
    context = _restricted_security_context(read_only_root=True)
    context["runAsUser"] = SIDECAR_USER_ID
    context["runAsGroup"] = SIDECAR_USER_ID
    return context


def _fetch_container(spec: ModelDeploymentSpec, image: str, pull_policy: str) -> dict[str, Any]:
    """``vigil-fetch`` (Vigil's image) fills the model folder before the server starts.

    Credentials come from the Secret the spec names, as environment variables of
    this container only: the operator never reads it, and a missing Secret or key
    shows in the container's status (CreateContainerConfigError), where the
    operator reads it. Its last line is the termination message the operator
    reports (ArtifactFetchFailed).
    """
    model, storage = spec.model, spec.model.storage
    assert model.uri is not None
    args = [model.uri, "--dest", model.path]
    if model.sha256:
        args += ["--sha256", model.sha256]
    if model.fetch.size_limit:  # an archive stops unpacking there, not at the kubelet's eviction
        args += ["--size-limit", model.fetch.size_limit]
    mounts: list[dict[str, Any]] = [{"name": MODEL_VOLUME, "mountPath": model.path}]
    if storage.ca is not None:
        mounts.append({"name": FETCH_CA_VOLUME, "mountPath": FETCH_CA_DIR, "readOnly": True})
        args += ["--ca-file", f"{FETCH_CA_DIR}/{storage.ca.key}"]
    env: list[dict[str, Any]] = []
    for name, value in (
        ("AWS_ENDPOINT_URL_S3", storage.endpoint),
        ("AWS_REGION", storage.region),
        (
            "VIGIL_S3_ADDRESSING",
            None if storage.path_style is None else "path" if storage.path_style else "virtual",
        ),
    ):
        if value is not None:
            env.append({"name": name, "value": value})
    if storage.secret is not None:
        for key in (*S3_SECRET_KEYS, S3_SESSION_TOKEN_KEY):
            ref = {"name": storage.secret, "key": key}
            if key == S3_SESSION_TOKEN_KEY:
                ref["optional"] = True
            env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
    container: dict[str, Any] = {
        "name": FETCH_CONTAINER,
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": ["vigil-fetch"],
        "args": args,
        "resources": model.fetch.container_resources,
        "volumeMounts": mounts,
        "securityContext": _vigil_security_context(),
        "terminationMessagePolicy": "File",
    }
    if env:
        container["env"] = env
    return container


def _sidecar_container(
    spec: ModelDeploymentSpec, sidecar_image: str, pull_policy: str
) -> dict[str, Any]:
    mounts: list[dict[str, Any]] = [
        {"name": "sidecar-config", "mountPath": SIDECAR_CONFIG_DIR, "readOnly": True},
        {"name": "sidecar-tmp", "mountPath": SIDECAR_SCRATCH_DIR},
    ]
    if spec.monitoring.reference is not None:
        mounts.append({"name": REFERENCE_VOLUME, "mountPath": REFERENCE_DIR, "readOnly": True})
    return {
        "name": SIDECAR_CONTAINER,
        "image": sidecar_image,
        "imagePullPolicy": pull_policy,
        "command": ["vigil-sidecar", "--config", SIDECAR_CONFIG_PATH],
        "ports": [
            {"name": SIDECAR_PORT_NAME, "containerPort": SIDECAR_PORT, "protocol": "TCP"},
            {"name": METRICS_PORT_NAME, "containerPort": METRICS_PORT, "protocol": "TCP"},
            {"name": FEEDBACK_PORT_NAME, "containerPort": FEEDBACK_PORT, "protocol": "TCP"},
        ],
        "env": [
            {"name": "VIGIL_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            # The sidecar's ids name its pod: labels for them go straight there.
            {"name": "VIGIL_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {
                "name": "VIGIL_POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {"name": "TMPDIR", "value": SIDECAR_SCRATCH_DIR},
        ],
        # Ready when the model server answers its readinessPath (and not draining).
        "readinessProbe": {
            "httpGet": {"path": SIDECAR_READY_PATH, "port": SIDECAR_PORT_NAME},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": SIDECAR_LIVE_PATH, "port": SIDECAR_PORT_NAME},
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "resources": copy.deepcopy(SIDECAR_RESOURCES),
        "volumeMounts": mounts,
        "securityContext": _vigil_security_context(),
    }


def _volumes(owner: Owner, spec: ModelDeploymentSpec, info: RevisionInfo) -> list[dict[str, Any]]:
    """The sidecar's settings and scratch space, the model (a claim, or the folder vigil-fetch
    fills), the reference profile."""
    volumes: list[dict[str, Any]] = [
        {
            "name": "sidecar-config",
            "configMap": {"name": naming.sidecar_configmap_name(owner.name, info.revision)},
        },
        {"name": "sidecar-tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    model = spec.model
    pvc = model.pvc
    if pvc is not None:
        volumes.append(
            {
                "name": MODEL_VOLUME,
                "persistentVolumeClaim": {"claimName": pvc.claim, "readOnly": True},
            }
        )
    elif model.fetched:
        folder = {"sizeLimit": model.fetch.size_limit} if model.fetch.size_limit else {}
        volumes.append({"name": MODEL_VOLUME, "emptyDir": folder})
        ca = model.storage.ca
        if ca is not None:
            items = [{"key": ca.key, "path": ca.key}]
            volumes.append(
                {"name": FETCH_CA_VOLUME, "configMap": {"name": ca.name, "items": items}}
            )
    if spec.server.read_only_root_filesystem:
        volumes.append({"name": SERVER_TMP_VOLUME, "emptyDir": {"sizeLimit": SERVER_TMP_SIZE}})
    reference = spec.monitoring.reference
    if reference is not None:
        volumes.append(
            {
                "name": REFERENCE_VOLUME,
                "configMap": {
                    "name": reference.name,
                    "items": [{"key": reference.key, "path": reference.key}],
                },
            }
        )
    return volumes


def mounted_reference(pod_spec: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """(ConfigMap, key) of the reference profile a pod spec mounts (None: none), as
    ``volumes`` writes it: what that revision's sidecars read, whatever the spec names now."""
    for volume in objects.items(pod_spec, "volumes"):
        configmap = objects.section(volume, "configMap")
        keys = objects.items(configmap, "items")
        if volume.get("name") == REFERENCE_VOLUME and configmap.get("name") and keys:
            return str(configmap["name"]), str(keys[0].get("key", ""))
    return None


def pod_spec(
    owner: Owner,
    spec: ModelDeploymentSpec,
    info: RevisionInfo,
    sidecar_image: str,
    sidecar_pull_policy: str = DEFAULT_PULL_POLICY,
) -> dict[str, Any]:
    """The pod template's spec: PodSecurity ``restricted``, no API token, the model fetched
    first when it comes from a URI. ``sidecar_pull_policy`` applies to the containers that
    run ``sidecar_image`` (the sidecar, vigil-fetch); the server's is the user's business."""
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        **(
            {"initContainers": [_fetch_container(spec, sidecar_image, sidecar_pull_policy)]}
            if spec.model.fetched
            else {}
        ),
        "containers": [
            _server_container(spec),
            _sidecar_container(spec, sidecar_image, sidecar_pull_policy),
        ],
        "volumes": _volumes(owner, spec, info),
    }
