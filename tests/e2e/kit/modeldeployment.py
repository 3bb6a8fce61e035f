"""ModelDeployments for the tests: the manifests, and a model deployed and serving.

Short windows and intervals (seconds, not minutes) keep each scenario well
under a few minutes; ``manifest`` builds the wine ModelDeployment every
operator, rollout, health and fault test starts from.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.kube import Kube, configmap
from kit.status import status
from kit.traffic import LiveTraffic, ModelEndpoint
from vigil.devcluster.models import TrainedModel, train_wine
from vigil.validation.golden import GoldenSet, configmap_manifest

MLSERVER_IMAGE = "seldonio/mlserver:1.7.1-sklearn"
#: The MLServer container's requests and limits in the real-node tests.
SERVER_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"cpu": "1", "memory": "512Mi"},
}
#: A replacement's steps: shadow, then two canary weights.
STEPS: list[dict[str, Any]] = [
    {"shadow": {"duration": "8s", "percent": 100, "minRequests": 20}},
    {"canary": {"weight": 20, "duration": "6s"}},
    {"canary": {"weight": 50, "duration": "6s"}},
]
TWEAK: list[dict[str, Any]] = [{"canary": {"weight": 50, "duration": "6s"}}]
ANALYSIS: dict[str, Any] = {
    "interval": "2s",
    "minRequests": 10,
    "failureLimit": 2,
    "minAgreement": 0.9,
    "maxPredictionShift": 1.0,
}
#: What ``changed`` removes instead of setting.
DELETE = "DELETE"


def manifest(
    model: TrainedModel,
    steps: list[dict[str, Any]] | None = None,
    *,
    tweak: list[dict[str, Any]] | None = None,
    analysis: Mapping[str, Any] | None = None,
    deadline: str = "90s",
    routing: Mapping[str, Any] | None = None,
    replicas: int = 1,
    window: str = "15s",
    metrics: Mapping[str, Any] | None = None,
    drift: Mapping[str, Any] | None = None,
    reference: str | None = None,
    config: Mapping[str, str] | None = None,
    readiness_path: str | None = None,
) -> dict[str, Any]:
    """The ModelDeployment named after ``model``, serving it with MLServer over v2.

    Defaults: ``STEPS`` for a replacement, ``TWEAK`` for a tweak, ``ANALYSIS``,
    direct metrics over a 15 s window, and the profile in ``<name>-reference``.
    """
    server: dict[str, Any] = {"image": MLSERVER_IMAGE, "protocol": "v2"}
    if readiness_path:
        server["readinessPath"] = readiness_path
    reference = reference or f"{model.name}-reference"
    monitoring: dict[str, Any] = {
        "reference": {"configMapKeyRef": {"name": reference, "key": "profile.json"}},
        "window": window,
        # Generous latency: MLServer shares two cores with everything else here.
        "slo": {"maxErrorRate": 0.05, "maxLatencyP95": "5s"},
        "metrics": dict(metrics or {"source": "direct"}),
    }
    if drift:
        monitoring["drift"] = dict(drift)
    rollout: dict[str, Any] = {
        "replacement": {"steps": STEPS if steps is None else steps},
        "tweak": {"steps": TWEAK if tweak is None else tweak},
        "analysis": dict(ANALYSIS if analysis is None else analysis),
        "progressDeadline": deadline,
    }
    if routing:
        rollout["trafficRouting"] = dict(routing)
    spec: dict[str, Any] = {
        "model": {"name": model.name, "version": model.version, "uri": model.storage_uri},
        "server": server,
        "replicas": replicas,
        "monitoring": monitoring,
        "rollout": rollout,
    }
    if config:
        spec["config"] = dict(config)
    return {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": model.name},
        "spec": spec,
    }


def changed(document: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``document`` with each dotted path set (``DELETE`` removes it)."""
    result = copy.deepcopy(dict(document))
    for path, value in changes.items():
        target = result
        *parents, leaf = path.split(".")
        for key in parents:
            target = target.setdefault(key, {})
        if value == DELETE:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return result


def golden_configmap(model: TrainedModel, name: str = "wine-golden") -> dict[str, Any]:
    """The golden set: research inputs and the research model's outputs.

    ``train_wine`` is deterministic (seeded forest on the full data), so the
    same fit here reproduces the research model's predictions.
    """
    from sklearn.ensemble import RandomForestClassifier

    rows = model.X[::3]
    research = RandomForestClassifier(n_estimators=30, random_state=0).fit(model.X, model.y)
    golden = GoldenSet(
        inputs=tuple(tuple(float(x) for x in row) for row in rows),
        expected=tuple(int(v) for v in research.predict(rows)),
        model=model.name,
        features=tuple(model.features),
    )
    return configmap_manifest(golden, name)


def apply_with_reference(kube: Kube, model: TrainedModel, document: Mapping[str, Any]) -> None:
    """The model's profile in the ConfigMap the ModelDeployment names, then the ModelDeployment."""
    ref = document["spec"]["monitoring"]["reference"]["configMapKeyRef"]
    kube.apply(configmap(ref["name"], {ref["key"]: model.profile_json()}), document)


def serve(
    kube: Kube,
    model: TrainedModel,
    document: Mapping[str, Any],
    *,
    timeout: float = 180,
    logs: Path | None = None,
) -> ModelEndpoint:
    """Apply the profile and the ModelDeployment; wait until it is Ready and every replica
    serves the model behind its Service."""
    apply_with_reference(kube, model, document)
    name = str(document["metadata"]["name"])
    kube.wait_ready(f"md/{name}", timeout=int(timeout))
    endpoint = ModelEndpoint(kube, name, model.name)
    endpoint.wait_serving(int(document["spec"]["replicas"]), timeout=timeout, logs=logs)
    return endpoint


@dataclass(frozen=True)
class Setup:
    """A stable wine model serving, with live traffic flowing to it."""

    kube: Kube
    stable: TrainedModel
    endpoint: ModelEndpoint
    traffic: LiveTraffic
    revision: str
    #: When the set-up began (time.monotonic()).
    started: float


def deploy(
    kube: Kube,
    tmp_path: Path,
    steps: list[dict[str, Any]] | None = None,
    *,
    logs: Path | None = None,
    **options: Any,
) -> Setup:
    """Stable wine model v1 serving (every replica answering), live traffic flowing.

    ``options`` go to ``manifest``; with Gateway API ``routing`` the traffic
    follows the HTTPRoute's weights.
    """
    started = time.monotonic()
    stable = train_wine(tmp_path / "wine-1", version="1", seed=0)
    endpoint = serve(kube, stable, manifest(stable, steps, **options), logs=logs)
    route = ((options.get("routing") or {}).get("gatewayAPI") or {}).get("httpRoute")
    traffic = endpoint.traffic(stable.X, rate=15.0, seed=3, http_route=route)
    revision = str(status(kube)["stable"]["revision"])
    return Setup(kube, stable, endpoint, traffic, revision, started)
