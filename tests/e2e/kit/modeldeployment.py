"""ModelDeployments for the tests: the manifests, and a model deployed and serving.

Short windows and intervals (seconds, not minutes) keep each scenario well
under a few minutes; ``manifest`` builds the wine ModelDeployment every
operator, rollout, health and fault test starts from. On the real node a
test's models live in a ``ModelStore``: a local volume claimed as ``models``
in the test's namespace, named ``pvc://models/<folder>`` and served by the
images built here.
"""

from __future__ import annotations

import copy
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.kube import Kube, configmap
from kit.status import status
from kit.traffic import LiveTraffic, ModelEndpoint
from vigil.devcluster import ClusterClient
from vigil.devcluster.cluster import LocalCluster
from vigil.devcluster.incluster import local_volume, real_node_namespace, volume_dir
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
    # No test judges latencyVsStable end to end (unit tests do): on two cores shared by
    # parallel tests a candidate's fresh pods answer measurably slower than the stable's
    # (P(slower) 0.75 [0.60, 0.89] seen), which at the default 0.6 rolls a good one back.
    "margins": {"latency": 0.5},
}
#: A step no test waits out: the test ends it (``kept_open``, ``end_step``).
OPEN_STEP = "600s"
#: What ``changed`` removes instead of setting.
DELETE = "DELETE"
#: The claim of a test's ModelStore, in its namespace.
CLAIM = "models"


@dataclass(frozen=True)
class ModelStore:
    """A test's models on the real node: folders of a local volume claimed as ``models``.

    Models trained here are served from it as a user's are from a volume
    (``pvc://models/<folder>``, mounted read-only), by ``server_image``.
    """

    folder: Path
    server_image: str
    claim: str = CLAIM

    def train(self, name: str, **options: Any) -> TrainedModel:
        """``train_wine`` into folder ``name`` of the volume."""
        return train_wine(self.folder / name, **options)

    def uri(self, model: TrainedModel) -> str:
        return f"pvc://{self.claim}/{model.folder.relative_to(self.folder)}"

    def manifest(
        self, model: TrainedModel, steps: list[dict[str, Any]] | None = None, **options: Any
    ) -> dict[str, Any]:
        """``manifest`` of ``model``, served from this volume by the server image built here."""
        return manifest(model, steps, uri=self.uri(model), image=self.server_image, **options)


@contextmanager
def model_store(
    cluster: ClusterClient, local: LocalCluster, namespace: str, server_image: str
) -> Iterator[ModelStore]:
    """``namespace``'s pods on the real node (PodSecurity ``restricted``) and its ModelStore;
    the volume and its folder removed afterwards."""
    cluster.apply(real_node_namespace(namespace, {"vigil.dev/e2e": "true"}))
    folder = volume_dir(local, namespace)
    cluster.apply(local_volume(CLAIM, folder, namespace=namespace))
    try:
        yield ModelStore(folder, server_image)
    finally:
        cluster.kubectl("delete", "pv", f"{CLAIM}-{namespace}", "--wait=false", check=False)
        shutil.rmtree(folder, ignore_errors=True)


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
    uri: str | None = None,
    image: str = MLSERVER_IMAGE,
) -> dict[str, Any]:
    """The ModelDeployment named after ``model``, serving it with MLServer over v2.

    Defaults: ``STEPS`` for a replacement, ``TWEAK`` for a tweak, ``ANALYSIS``,
    direct metrics over a 15 s window, the profile in ``<name>-reference``, the
    model at ``uri`` (its folder's ``file://`` URI) served by ``image``.
    """
    server: dict[str, Any] = {"image": image, "protocol": "v2"}
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
        "model": {"name": model.name, "version": model.version, "uri": uri or model.storage_uri},
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


def kept_open(document: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` whose steps end by their durations only (earlyAdvance off): with a long
    one (``OPEN_STEP``) a test acts while the step is surely under way, then ``end_step``."""
    return changed(document, {"spec.rollout.analysis.earlyAdvance": False})


def end_step(kube: Kube, document: Mapping[str, Any], index: int) -> None:
    """Apply ``document`` with the replacement's step ``index`` shortened to 1 s, as a
    person who has seen enough would: the next check ends the step."""
    shortened = copy.deepcopy(dict(document))
    step = shortened["spec"]["rollout"]["replacement"]["steps"][index]
    (kind,) = step
    step[kind]["duration"] = "1s"
    kube.apply(shortened)


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
) -> ModelEndpoint:
    """Apply the profile and the ModelDeployment; wait until it is Ready and every replica
    serves the model behind its Service (reached through its ClusterIP)."""
    apply_with_reference(kube, model, document)
    name = str(document["metadata"]["name"])
    kube.wait_ready(f"md/{name}", timeout=int(timeout))
    endpoint = ModelEndpoint(kube, name, model.name)
    endpoint.wait_serving(int(document["spec"]["replicas"]), timeout=timeout)
    return endpoint


@dataclass(frozen=True)
class Setup:
    """A stable wine model serving, with live traffic flowing to it."""

    kube: Kube
    stable: TrainedModel
    endpoint: ModelEndpoint
    #: Where its models live on the real node.
    store: ModelStore | None
    traffic: LiveTraffic
    revision: str
    #: When the set-up began (time.monotonic()).
    started: float


def deploy(
    kube: Kube,
    tmp_path: Path,
    steps: list[dict[str, Any]] | None = None,
    *,
    store: ModelStore | None = None,
    **options: Any,
) -> Setup:
    """Stable wine model v1 serving (every replica answering), live traffic flowing.

    ``options`` go to ``manifest``; with Gateway API ``routing`` the traffic
    follows the HTTPRoute's weights. With ``store`` the model is served from it
    on the real node (``tmp_path`` unused).
    """
    started = time.monotonic()
    if store is None:
        stable = train_wine(tmp_path / "wine-1", version="1", seed=0)
        document = manifest(stable, steps, **options)
    else:
        stable = store.train("wine-1", version="1", seed=0)
        document = store.manifest(stable, steps, **options)
    endpoint = serve(kube, stable, document)
    route = ((options.get("routing") or {}).get("gatewayAPI") or {}).get("httpRoute")
    traffic = endpoint.traffic(stable.X, rate=15.0, seed=3, http_route=route)
    revision = str(status(kube)["stable"]["revision"])
    return Setup(kube, stable, endpoint, store, traffic, revision, started)
