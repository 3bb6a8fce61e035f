"""``make demo``: the whole system on one machine, playing the mission's scenarios.

Sets up the local cluster with its real node, builds the images here
(vigil.local/vigil, vigil.local/mlserver-sklearn) and imports them into the
node, installs the operator IN the cluster from ``manifests/overlays/local``
(its image, its ServiceAccount, only its RBAC), a real Prometheus beside the
cluster (Kubernetes service discovery, scraping pod IPs), and models trained
from scikit-learn's wine data, uploaded as archives to SeaweedFS (an
S3-compatible store, a pod in the demo's namespace) and named
``s3://models/<folder>/model.tar.gz`` with a reader's keys in a Secret, as a
team keeps them: each pod's ``vigil-fetch`` init container downloads its
model. Model pods are real containers
(MLServer behind the sidecar) in a namespace under PodSecurity
``restricted``; the demo's traffic goes to the ModelDeployment's Service
(its ClusterIP: kube-proxy picks the pod), as a user's clients would. It
then plays each scenario with narration and elapsed time, showing
``kubectl get md`` after each, writes the model's report over the whole run
(``kubectl vigil report``: ``.vigil/demo/wine-report.html``), leaves
everything running and prints how to look around; ``make demo-down``
removes it all.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vigil.common import kube_yaml
from vigil.devcluster.cluster import (
    ClusterClient,
    ClusterError,
    LocalCluster,
    pid_alive,
    real_node_wanted,
    repo_root,
)
from vigil.devcluster.common import Recorded, process_identity
from vigil.devcluster.failures import reporting_failures
from vigil.devcluster.images import ImageArchive, ensure_images
from vigil.devcluster.incluster import (
    OPERATOR,
    OVERLAY_NAMESPACE,
    InClusterOperator,
    real_node_namespace,
)
from vigil.devcluster.models import TrainedModel, mislabelled_wine, train_wine
from vigil.devcluster.node import NODE_NAME
from vigil.devcluster.prometheus import LocalPrometheus
from vigil.devcluster.seaweedfs import (
    READER,
    S3_PORT,
    S3Store,
    pod_store,
    put_object,
    seaweedfs_image,
    store_objects,
)
from vigil.devcluster.traffic import (
    ReadFailed,
    TrafficGenerator,
    service_address,
    serving_pod_ips,
)

NAMESPACE = "vigil-demo"
NAME = "wine"
#: The demo's S3-compatible store (SeaweedFS, a pod and Service in NAMESPACE), its
#: bucket, and the Secret with the reader's keys the ModelDeployment names.
STORE = "seaweedfs"
BUCKET = "models"
STORE_SECRET = "wine-artifacts"
#: The demo's Prometheus listens on its cluster's port base + this (26491 by default): two
#: demos at two port bases must not reuse one Prometheus (``setup`` reuses a ready one).
PROMETHEUS_PORT_OFFSET = 91


def prometheus_port(port_base: int) -> int:
    """Where the demo's Prometheus serves queries on 127.0.0.1."""
    return port_base + PROMETHEUS_PORT_OFFSET


class Narrator:
    """Numbered steps with elapsed time since the demo started."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.failures: list[str] = []

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", flush=True)

    def scenario(self, title: str) -> None:
        print(f"\n=== [{time.monotonic() - self.started:6.1f}s] {title} ===", flush=True)

    def failed(self, text: str) -> None:
        self.failures.append(text)
        self.say(f"FAILED: {text}")


def _state_dir() -> Path:
    root = repo_root() or Path.cwd()
    return root / ".vigil" / "demo"


def _venv_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def model_key(model: TrainedModel) -> str:
    """The model's archive's key in the demo's bucket."""
    return f"{model.folder.name}/model.tar.gz"


def model_uri(model: TrainedModel) -> str:
    """The model's archive in the demo's store, as a ModelDeployment names it."""
    return f"s3://{BUCKET}/{model_key(model)}"


def model_archive(model: TrainedModel) -> bytes:
    """The model's folder as a .tar.gz, its files at the top: unpacked at /mnt/models,
    MLServer's model folder in the local image."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(model.folder.iterdir()):
            tar.add(path, arcname=path.name)
    return buffer.getvalue()


#: PerformanceDegraded from the labels of the serving revision (scenario 6 sends them).
PERFORMANCE = {"minAccuracy": 0.95, "minLabels": 50, "window": "30s"}
#: Scenario 6's replacement: one short canary, over before its labels arrive, then a bake.
BAKED_STEPS = [{"canary": {"weight": 50, "duration": "10s"}}]
BAKE = {"duration": "3m", "minReplicas": 1}
#: Seconds from an answer to its label in scenario 6 (the label pipeline's delay).
LABEL_DELAY = 5.0


def model_deployment(
    model: TrainedModel,
    *,
    server_image: str,
    config: dict[str, str] | None = None,
    baked: bool = False,
) -> str:
    """The demo's ModelDeployment: short window and interval so the demo moves quickly;
    ``baked``: scenario 6's single canary step and bake period."""
    body: dict[str, Any] = {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "model": {
                "name": model.name,
                "version": model.version,
                "uri": model_uri(model),
                "storage": {
                    "secretRef": {"name": STORE_SECRET},
                    "endpoint": f"http://{STORE}.{NAMESPACE}.svc:{S3_PORT}",
                },
            },
            "server": {
                "image": server_image,
                "protocol": "v2",
                # MLServer writes only to /tmp (its image's settings): harden it.
                "readOnlyRootFilesystem": True,
                "resources": {
                    "requests": {"cpu": "100m", "memory": "256Mi"},
                    "limits": {"memory": "1Gi"},
                },
            },
            "replicas": 2,
            "config": config or {},
            "monitoring": {
                "reference": {
                    "configMapKeyRef": {
                        "name": f"{NAME}-reference-{model.version}",
                        "key": "profile.json",
                    }
                },
                "window": "30s",
                "slo": {"maxErrorRate": 0.05, "maxLatencyP95": "500ms"},
                "drift": {"method": "psi", "warning": 0.1, "threshold": 0.2},
                "performance": PERFORMANCE,
            },
            # Short steps so the demo moves quickly; real rollouts use minutes.
            "rollout": {
                "replacement": {
                    "steps": [
                        {"shadow": {"duration": "15s", "percent": 100, "minRequests": 30}},
                        {"canary": {"weight": 20, "duration": "10s"}},
                        {"canary": {"weight": 50, "duration": "10s"}},
                    ]
                },
                "tweak": {"steps": [{"canary": {"weight": 50, "duration": "10s"}}]},
                "analysis": {
                    "interval": "3s",
                    "minRequests": 20,
                    "failureLimit": 2,
                    "minAgreement": 0.9,
                    "maxPredictionShift": 0.5,
                    # On this 2-core node a candidate's new pod answers a little slower than
                    # the stable's warm ones for its first minutes (P(slower) 0.53-0.66 in two
                    # runs): with the default margin (0.6) a short canary often stays
                    # undecided until the deadline. The demo shows other gates.
                    "margins": {"latency": 0.25},
                },
                "progressDeadline": "3m",
            },
        },
    }
    if baked:
        rollout = body["spec"]["rollout"]
        rollout["replacement"]["steps"] = BAKED_STEPS
        rollout["bake"] = BAKE
    return kube_yaml.dump(body, sort_keys=False)


def changed_world(model: TrainedModel, feature: str = "flavanoids") -> npt.NDArray[Any]:
    """The true classes after the world changed: same inputs, but where ``feature`` is above
    its median the class is the next one (a concept shift no input statistic can see)."""
    column = model.X[:, model.features.index(feature)]
    return np.where(column > np.median(column), (model.y + 1) % 3, model.y)


def reference_configmap(model: TrainedModel) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{NAME}-reference-{model.version}", "namespace": NAMESPACE},
            "data": {"profile.json": model.profile_json()},
        }
    )


class Demo:
    def __init__(self) -> None:
        self.dir = _state_dir()
        self.narrator = Narrator()
        self.cluster: ClusterClient | None = None
        self.pids: dict[str, int] = {}
        # Each process's identity, taken at its start: a later run signals only it.
        self.identities: dict[str, str | None] = {}
        self.server_image = ""
        self.store_image: ImageArchive | None = None
        self.store: S3Store | None = None
        self.prometheus_port = prometheus_port(LocalCluster().ports.etcd_client)

    # -- setup -------------------------------------------------------------------------

    def setup(self) -> ClusterClient:
        say = self.narrator.say
        self.dir.mkdir(parents=True, exist_ok=True)
        stop_processes(self.dir, say)  # a demo run again replaces its processes
        if not real_node_wanted():
            raise ClusterError(
                "make demo runs its models as real containers on the local cluster's real "
                "node: unset VIGIL_REAL_NODE=0"
            )
        say("starting (or reusing) the local Kubernetes cluster with its real node")
        local = LocalCluster(
            log=lambda line: say(line.removeprefix("devcluster: ")), real_node=True
        )
        local.up()  # under the cluster's lock, as make cluster-up and the tests take it
        cluster = local.client()
        self.cluster = cluster
        say("building (or finding) the images vigil.local/vigil and vigil.local/mlserver-sklearn")
        images = ensure_images(["vigil", "mlserver-sklearn"], say)
        self.store_image = seaweedfs_image(say)
        refs = ", ".join(image.ref for image in [*images.values(), self.store_image])
        say(f"importing them into the real node's containerd: {refs}")
        local.node().load_images([*images.values(), self.store_image])
        self.server_image = images["mlserver-sklearn"].ref
        say(
            "installing the operator in the cluster from manifests/overlays/local "
            "(CRD, namespace, ServiceAccount, RBAC, Deployment)"
        )
        InClusterOperator(cluster).deploy(local, images["vigil"])
        cluster.wait_established("modeldeployments.vigil.dev")
        say(f"the operator's pod is Ready on {NODE_NAME}")
        say(f"namespace {NAMESPACE}: PodSecurity restricted enforced, its pods on {NODE_NAME}")
        cluster.apply(real_node_namespace(NAMESPACE))
        # A demo played again starts from no ModelDeployment (its pods go with it).
        cluster.kubectl("delete", "md", NAME, "-n", NAMESPACE, "--ignore-not-found", "--wait")

        say(f"starting Prometheus on 127.0.0.1:{self.prometheus_port} (pod discovery, scrape 2s)")
        prometheus = LocalPrometheus(
            cluster, self.dir / "prometheus", port=self.prometheus_port, scrape_interval="2s"
        )
        if not prometheus.ready():
            prometheus.start()
            assert prometheus.process is not None
            self.pids["prometheus"] = prometheus.process.pid
            self.identities["prometheus"] = process_identity(prometheus.process.pid)
        self._save()
        return cluster

    def _save(self) -> None:
        state = {"pids": self.pids, "identities": self.identities}
        (self.dir / "state.json").write_text(json.dumps(state, indent=2))

    # -- helpers -------------------------------------------------------------------------

    def _wait(self, check: Callable[[], bool], timeout: float, what: str) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(1)
        self.narrator.failed(f"{what} within {timeout:.0f}s")
        return False

    def md(self) -> dict[str, Any]:
        assert self.cluster is not None
        try:
            return self.cluster.get("md", NAME, "-n", NAMESPACE) or {}
        except subprocess.CalledProcessError:
            return {}

    def condition(self, kind: str) -> dict[str, Any]:
        for item in self.md().get("status", {}).get("conditions", []):
            if item.get("type") == kind:
                return dict(item)
        return {}

    def wait_condition(self, kind: str, status: str, timeout: float) -> bool:
        ok = self._wait(
            lambda: self.condition(kind).get("status") == status,
            timeout,
            f"condition {kind}={status}",
        )
        found = self.condition(kind)
        self.narrator.say(
            f"{kind}={found.get('status')} reason={found.get('reason')}: {found.get('message', '')}"
        )
        return ok

    def follow_rollout(
        self, version: str, outcome: str, timeout: float, change: str | None = None
    ) -> bool:
        """Narrate each step of the rollout of ``version`` until history shows ``outcome``."""
        seen: list[str] = []
        baking = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.md().get("status", {})
            candidate = status.get("candidate") or {}
            if candidate.get("modelVersion") == version:
                step = f"{candidate.get('change')} step {int(candidate.get('step', 0)) + 1}"
                ready = (self.condition("Ready").get("message") or "")[:90]
                label = f"{step}: {ready}"
                if not seen or seen[-1].split(":")[0] != step:
                    self.narrator.say(label)
                    seen.append(label)
            bake = status.get("bake") or {}
            if bake.get("revision") and not baking:
                baking = True
                self.narrator.say(
                    f"promoted; baking: revision {bake['revision']} serves, the previous "
                    f"{bake.get('previous')} kept until {bake.get('endsAt')}"
                )
            latest = (status.get("history") or [{}])[0]
            if (
                latest.get("modelVersion") == version
                and latest.get("outcome") == outcome
                and (change is None or latest.get("change") == change)
            ):
                self.narrator.say(
                    f"history: v{version} {latest.get('change')} {outcome}"
                    + (f" ({latest['reason']})" if latest.get("reason") else "")
                )
                return True
            time.sleep(1)
        self.narrator.failed(f"v{version} {outcome} within {timeout:.0f}s")
        return False

    def show(self) -> None:
        """``kubectl get md`` and the status view, as a person would look."""
        assert self.cluster is not None
        table = self.cluster.kubectl("get", "md", "-n", NAMESPACE, "-o", "wide", check=False)
        print("$ kubectl get md -o wide\n" + (table.stdout.rstrip() or table.stderr.rstrip()))
        view = subprocess.run(
            [
                _venv_bin("vigil"),
                "status",
                NAME,
                "-n",
                NAMESPACE,
                "--no-color",
                "--kubeconfig",
                self.cluster.kubeconfig,
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "VIGIL_KUBECTL": self.cluster.kubectl_binary},
        )
        print(
            f"$ kubectl vigil status {NAME}\n" + (view.stdout.rstrip() or view.stderr.rstrip()),
            flush=True,
        )

    # -- scenarios -------------------------------------------------------------------------

    def play(self) -> int:
        cluster = self.setup()
        n = self.narrator
        models = self.dir / "models"
        n.say("training models on scikit-learn's wine data (v1, a good v2, a bad v3)")
        v1 = train_wine(models / "wine-1", version="1", seed=0)
        v2 = train_wine(models / "wine-2", version="2", seed=1)
        v3 = train_wine(models / "wine-3-bad", version="3", shuffled_labels=True, seed=2)
        self.start_store(cluster)
        self.upload(v1, v2, v3)

        n.scenario("1. A brand-new model goes Ready and Healthy")
        n.say(f"model.uri: {model_uri(v1)} (fetched by vigil-fetch, read-only at /mnt/models)")
        cluster.apply(reference_configmap(v1))
        cluster.apply(model_deployment(v1, server_image=self.server_image))
        self.wait_condition("Ready", "True", 180)
        self._wait(
            lambda: len(answering_pods(cluster)) == 2,
            120,
            "both pods' sidecar and MLServer answering ready",
        )
        self.check_placement()
        address = self._wait_for_service()
        traffic = TrafficGenerator(
            cluster, NAMESPACE, NAME, "wine", v1.X, rate=15, through_service=True
        ).start()
        n.say(f"sending traffic drawn from the training data to the Service {address} (15/s)")
        self.wait_condition("Healthy", "True", 120)
        self.show()

        n.scenario("2. Drifted traffic raises DriftDetected, normal traffic clears it")
        n.say("shifting alcohol and proline by one reference standard deviation")
        traffic.set_shifts({0: 1.0, 12: 1.0})
        self.wait_condition("DriftDetected", "True", 120)
        self._wait(
            lambda: all(
                f in self.condition("DriftDetected").get("message", "")
                for f in ("alcohol", "proline")
            ),
            60,
            "DriftDetected naming both shifted features once they fill the window",
        )
        n.say(f"DriftDetected: {self.condition('DriftDetected').get('message')}")
        self.show()
        n.say("back to traffic like the training data")
        traffic.set_shifts({})
        self.wait_condition("DriftDetected", "False", 120)
        self.show()

        n.scenario(
            "3. A good replacement (v2, retrained): shadow, canary 20%, canary 50%, promoted"
        )
        cluster.apply(reference_configmap(v2))
        cluster.apply(model_deployment(v2, server_image=self.server_image))
        self.follow_rollout("2", "Promoted", 240)
        self.show()

        n.scenario("4. A bad replacement (v3, trained on shuffled labels) is rolled back")
        cluster.apply(reference_configmap(v3))
        cluster.apply(model_deployment(v3, server_image=self.server_image))
        self.follow_rollout("3", "RolledBack", 240)
        ready = self.condition("Ready")
        n.say(f"Ready={ready.get('status')} reason={ready.get('reason')}: {ready.get('message')}")
        self.show()

        n.scenario("5. A tweak (a config change on v2) rolls out with its lighter policy")
        cluster.apply(
            model_deployment(
                v2, server_image=self.server_image, config={"MLSERVER_LOG_LEVEL": "info"}
            )
        )
        self.follow_rollout("2", "Promoted", 240, change="tweak")
        self.show()

        self.ground_truth(traffic, v2, models)
        stats = traffic.stop()
        n.say(
            f"traffic through the Service: {stats.sent} sent, {stats.ok} ok, {stats.failed} failed"
            f"; {stats.labels_sent} labels sent"
            + (f" ({stats.failures})" if stats.failures else "")
        )
        if stats.failed:
            n.failed(f"{stats.failed} requests failed: {stats.failures}")
        labels_failed = {k: v for k, v in stats.failures.items() if k.startswith("label")}
        if labels_failed:
            n.failed(f"labels refused: {labels_failed}")
        n.say(f"the demo played in {time.monotonic() - n.started:.0f}s")

        self.write_report()
        self.look_around()
        if n.failures:
            print("\nThe demo finished with failures:\n  " + "\n  ".join(n.failures))
            return 1
        return 0

    def start_store(self, cluster: ClusterClient) -> None:
        """SeaweedFS in the namespace and the Secret with the reader's keys (read and list
        only) that the ModelDeployment names, as a team keeps its models."""
        say = self.narrator.say
        say(f"SeaweedFS (S3-compatible) in {NAMESPACE}: pod and Service {STORE}:{S3_PORT}")
        assert self.store_image is not None, "setup() loads the store's image"
        cluster.apply(
            kube_yaml.dump_all(store_objects(STORE, self.store_image.ref, {})),
            namespace=NAMESPACE,
        )
        cluster.kubectl(
            "wait", "pod", STORE, "-n", NAMESPACE, "--for=condition=Ready", "--timeout=120s"
        )
        service: dict[str, Any] = cluster.get_json("service", STORE, "-n", NAMESPACE)
        ip = str(service["spec"]["clusterIP"])
        self.store = pod_store(ip, Path(f"kubectl logs -n {NAMESPACE} {STORE}"))
        secret = cluster.kubectl(
            "create", "secret", "generic", STORE_SECRET, "-n", NAMESPACE,
            f"--from-literal=AWS_ACCESS_KEY_ID={READER.access_key}",
            f"--from-literal=AWS_SECRET_ACCESS_KEY={READER.secret_key}",
            "--dry-run=client", "-o", "yaml",
        )  # fmt: skip
        cluster.apply(secret.stdout)
        say(f"Secret {STORE_SECRET}: the reader's keys (read and list only)")

    def upload(self, *models: TrainedModel) -> None:
        """Each model's folder as an archive in the store's bucket (the admin's keys), before
        a ModelDeployment names it."""
        assert self.store is not None, "start_store() first"
        for model in models:
            put_object(self.store, BUCKET, model_key(model), model_archive(model))
        self.narrator.say(f"uploaded {', '.join(model_uri(m) for m in models)}")

    def ground_truth(self, traffic: TrafficGenerator, v2: TrainedModel, models: Path) -> None:
        """Scenario 6: labels arrive late; a bake-period rollback; the world changes under
        normal-looking inputs."""
        assert self.cluster is not None
        n, cluster = self.narrator, self.cluster
        n.scenario("6. Ground truth: late labels, a bake-period rollback, a world that changed")
        n.say(
            f"a label pipeline sends each answered request's true class by its X-Request-Id, "
            f"{LABEL_DELAY:.0f}s later, in batches, to the Service's feedback port "
            f"(monitoring.performance: {PERFORMANCE})"
        )
        traffic.set_labels(v2.y, delay=LABEL_DELAY)
        self.wait_condition("PerformanceDegraded", "False", 90)
        stable = self.md().get("status", {}).get("stable", {}).get("revision", "")

        worse, accuracy = mislabelled_wine(models / "wine-4", v2, version="4", share=0.2)
        self.upload(worse)
        n.say(
            f"v4: retrained with a fifth of its labels wrong (accuracy {accuracy:.2f} on the "
            f"rows sent); one 10s canary, then a bake of {BAKE['duration']} keeping the previous "
            f"revision at {BAKE['minReplicas']} replica"
        )
        cluster.apply(reference_configmap(worse))
        cluster.apply(
            model_deployment(
                worse,
                server_image=self.server_image,
                config={"MLSERVER_LOG_LEVEL": "info"},
                baked=True,
            )
        )
        self.follow_rollout("4", "RolledBack", 240)
        self.events("Switched", "BakeFailed", "RolledBack")
        ready = self.condition("Ready")
        n.say(f"Ready={ready.get('status')} reason={ready.get('reason')}: {ready.get('message')}")
        spec = self.md().get("spec", {}).get("model", {})
        back = self.md().get("status", {}).get("stable", {}).get("revision")
        n.say(
            f"live traffic back on revision {back} (the stable before v4: {stable}); "
            f"spec untouched: model.version {spec.get('version')}"
        )
        if back != stable:
            n.failed(f"the stable after the bake rollback is {back}, not {stable}")
        if "in its bake period" not in str(ready.get("message", "")):
            n.failed(f"v4 was rolled back, but not in its bake period: {ready.get('message')}")
        if spec.get("version") != "4":
            n.failed(f"the rollback changed the spec: model.version {spec.get('version')}")
        n.say("the owner puts v2 back in the spec: its revision is the stable, nothing rolls out")
        cluster.apply(
            model_deployment(
                v2, server_image=self.server_image, config={"MLSERVER_LOG_LEVEL": "info"}
            )
        )
        self.wait_condition("Ready", "True", 60)
        after = self.md().get("status", {})
        if after.get("candidate") or after.get("stable", {}).get("revision") != stable:
            n.failed(f"putting v2 back started a rollout: {after.get('candidate')}")
        self.wait_condition("PerformanceDegraded", "False", 90)
        self.show()

        n.say(
            "the world changes: same inputs (drawn from the training data), but where "
            "flavanoids is above its median the true class is now the next one"
        )
        traffic.set_labels(changed_world(v2), delay=LABEL_DELAY)
        self.wait_condition("PerformanceDegraded", "True", 120)
        drift = self.condition("DriftDetected")
        n.say(
            f"DriftDetected={drift.get('status')} reason={drift.get('reason')}: "
            f"{drift.get('message', '')}"
        )
        if drift.get("status") != "False":
            n.failed(f"DriftDetected is {drift.get('status')} with inputs like the training data")
        self.show()

    def events(self, *reasons: str) -> None:
        """The ModelDeployment's Events with these reasons, as ``kubectl get events`` shows."""
        assert self.cluster is not None
        found = self.cluster.get_json(
            "events", "-n", NAMESPACE, "--field-selector", "involvedObject.kind=ModelDeployment"
        )["items"]  # type: ignore[index]
        print("$ kubectl get events --field-selector involvedObject.kind=ModelDeployment")
        found.sort(key=lambda e: e.get("eventTime") or e.get("lastTimestamp") or "")
        for event in found:
            if event.get("reason") in reasons:
                print(f"  {event.get('type'):<8}{event['reason']:<12}{event.get('message', '')}")

    def check_placement(self) -> None:
        """Every pod of the namespace (the models' and the store's) runs on the real node
        (the namespace's annotations put it there)."""
        assert self.cluster is not None
        pods = self.cluster.get_json("pods", "-n", NAMESPACE)["items"]  # type: ignore[union-attr]
        where = {p["metadata"]["name"]: p["spec"].get("nodeName") for p in pods}
        self.narrator.say(
            f"pods in {NAMESPACE}: {', '.join(f'{k} on {v}' for k, v in sorted(where.items()))}"
        )
        elsewhere = {k: v for k, v in where.items() if v != NODE_NAME}
        if elsewhere:
            self.narrator.failed(
                f"pods not on {NODE_NAME}: {elsewhere} (the API server lacks the "
                "PodNodeSelector admission plugin? make demo-down and run again)"
            )

    def _wait_for_service(self) -> str:
        """The Service's address, once kube-proxy routes it (a moment after the pods' Ready)."""
        assert self.cluster is not None
        address = service_address(self.cluster, NAMESPACE, NAME) or "?"
        self._wait(
            lambda: _http_ok(f"http://{address}/healthz/ready"), 60, f"the Service {address}"
        )
        return address

    def write_report(self) -> None:
        """The model's report over the whole demo (``kubectl vigil report``), and its path."""
        assert self.cluster is not None
        n = self.narrator
        page = self.dir / f"{NAME}-report.html"
        # The whole run and a minute to spare (Prometheus started during setup).
        since = f"{int(time.monotonic() - n.started) + 60}s"
        n.say(f"writing the model's report over the last {since}: kubectl vigil report {NAME}")
        started = time.monotonic()
        result = subprocess.run(
            [
                _venv_bin("vigil"),
                "report",
                NAME,
                f"--namespace={NAMESPACE}",
                f"--kubeconfig={self.cluster.kubeconfig}",
                f"--prometheus=http://127.0.0.1:{self.prometheus_port}",
                f"--since={since}",
                f"--output={page}",
                f"--json={page.with_suffix('.json')}",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "VIGIL_KUBECTL": self.cluster.kubectl_binary},
            check=False,
        )
        if result.returncode != 0:
            n.failed(f"kubectl vigil report: {result.stderr.strip()[-500:]}")
            return
        n.say(
            f"report written in {time.monotonic() - started:.1f}s "
            f"({page.stat().st_size / 1024:.0f} KiB): {result.stdout.strip()} "
            "(open it in a browser; no network needed)"
        )

    def look_around(self) -> None:
        cluster = self.cluster
        kubeconfig = cluster.kubeconfig if cluster else "?"
        metrics = "?"
        if cluster is not None:
            found = service_address(cluster, OVERLAY_NAMESPACE, f"{OPERATOR}-metrics")
            metrics = found or metrics
        print(
            f"""
Everything is still running. Look around:
  export KUBECONFIG={kubeconfig}
  kubectl get md -n {NAMESPACE} -o wide
  kubectl describe md {NAME} -n {NAMESPACE}
  kubectl get pods -n {NAMESPACE} -o wide
  kubectl get events -n {NAMESPACE} --sort-by=.lastTimestamp
  kubectl logs -n {OVERLAY_NAMESPACE} deploy/{OPERATOR}
  Prometheus:        http://127.0.0.1:{self.prometheus_port}  (try: vigil_requests_total)
  Operator metrics:  http://{metrics}/metrics  (its Service; this machine routes Services)
  Model Service:     http://{service_address(cluster, NAMESPACE, NAME) if cluster else "?"}
  Dashboard:         manifests/monitoring/dashboards/vigil.json (import into Grafana)
  Logs:              {self.dir}/prometheus/, kubectl logs (pods), .vigil/cluster/logs/
Remove it all: make demo-down
""",
            flush=True,
        )


def answering_pods(cluster: ClusterClient) -> list[str]:
    """The demo model's pods whose sidecar answers ready ([] while the API cannot be read)."""
    try:
        return serving_pod_ips(cluster, NAMESPACE, NAME, answering=True)
    except ReadFailed:
        return []


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def stop_processes(folder: Path, say: Callable[[str], None] = print) -> None:
    """Stop the processes a previous demo run left (Prometheus, with its process group),
    those still running: after a reboot their pids are other processes', left alone."""
    try:
        state = json.loads((folder / "state.json").read_text())
        pids: dict[str, int] = state["pids"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    identities: dict[str, str | None] = state.get("identities") or {}
    marker = str(folder.resolve())
    processes = {
        name: Recorded(int(pid), identities.get(name), marker) for name, pid in pids.items()
    }
    for name, process in processes.items():
        if process.running():
            say(f"stopping the previous demo's {name} (pid {process.pid})")
            process.signal(signal.SIGTERM, group=True)
        elif pid_alive(process.pid):
            say(f"the previous demo's {name} is gone; its pid {process.pid} is another's now")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(p.running() for p in processes.values()):
        time.sleep(0.2)
    for process in processes.values():
        if process.running():
            process.signal(signal.SIGKILL, group=True)
    (folder / "state.json").unlink(missing_ok=True)


def down() -> int:
    """Stop the demo's processes and the local cluster; remove their data."""
    folder = _state_dir()
    stop_processes(folder)
    LocalCluster().down()
    if folder.exists():
        shutil.rmtree(folder)
    print("demo-down: done")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vigil-devcluster demo")
    parser.add_argument("action", choices=["up", "down"])
    args = parser.parse_args(argv)
    # A missing prerequisite (root, a package, a taken port) is one line, as for cluster-up.
    return reporting_failures(
        "vigil-devcluster demo", lambda: down() if args.action == "down" else Demo().play()
    )
