"""Models fetched by vigil-fetch, served through the operator running on the real node.

The operator runs IN the cluster (``manifests/overlays/local``'s Deployment,
in this module's namespace, with only its RBAC). Three ModelDeployments there,
one per scheme, name the same trained model's archive: ``wine-http`` on a
busybox ``httpd`` pod (with its sha256), ``wine-https`` on Python's https
server with a certificate of a CA made by ``openssl`` at test time (named by
``caConfigMapRef``), ``wine-s3`` in SeaweedFS running as a pod, read with a
Secret's keys. Each reaches Ready on real MLServer containers
and answers through its Service (ClusterIP, kube-proxy) what the model answers
in this process. Then replacements whose artifact cannot be had (a wrong
digest, an archive escaping its folder, a missing object, wrong keys, a
Secret that does not exist, a folder past its sizeLimit) fail at once, a
refusing host at the rollout's progress deadline, with the fetcher's
words in the Ready condition and a Warning Event, while the stable
answers every request sent through the Service. The module shares one
namespace, one operator and the three ModelDeployments (starting MLServer is
the slow part); the failing replacements come last. Traffic goes only to
pod and Service addresses of this cluster.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kit.kube import MD_LABEL, Kube, ready
from kit.modeldeployment import SERVER_RESOURCES
from kit.status import condition, status
from kit.traffic import ModelEndpoint
from kit.waits import wait_for
from test_fetch_on_the_real_node import (
    BIG_KEY,
    BIG_SIZE,
    BUCKET,
    MARKER,
    MODEL_KEY,
    TLS_HOST,
    apply_tls_server,
    archive,
    down_service,
    web_objects,
)

from vigil.common import kube_yaml
from vigil.devcluster import ClusterClient
from vigil.devcluster.cluster import LocalCluster
from vigil.devcluster.images import ensure_images
from vigil.devcluster.incluster import InClusterOperator
from vigil.devcluster.models import TrainedModel, train_wine
from vigil.devcluster.node_images import busybox_image
from vigil.devcluster.seaweedfs import (
    READER,
    S3_PORT,
    pod_store,
    put_object,
    seaweedfs_image,
    store_objects,
)
from vigil.devcluster.traffic import TrafficGenerator, service_address, v2_body

MODEL = "wine"
HTTP, HTTPS, S3 = "wine-http", "wine-https", "wine-s3"
REFUSED_ROLLOUT = {
    "replacement": {"steps": [{"canary": {"weight": 50, "duration": "10s"}}]},
    # Past the first exit 75: six refused attempts with 31 s of back-off, on a busy machine.
    "progressDeadline": "120s",
}


@dataclass(frozen=True)
class Served:
    kube: Kube
    model: TrainedModel
    server_image: str
    #: The model's archive as uploaded, and apply-to-Ready seconds per ModelDeployment.
    model_tar: bytes
    ready_after: dict[str, float]

    @property
    def namespace(self) -> str:
        return self.kube.namespace

    @property
    def http_uri(self) -> str:
        return f"http://web.{self.namespace}.svc/a/model.tar.gz"

    @property
    def https_uri(self) -> str:
        return f"https://{TLS_HOST}.{self.namespace}.svc/model.tar.gz"

    def storage(self, secret: str = "reader") -> dict[str, Any]:
        endpoint = f"http://seaweedfs.{self.namespace}.svc:{S3_PORT}"
        return {"secretRef": {"name": secret}, "endpoint": endpoint}

    def status(self, name: str) -> dict[str, Any]:
        return status(self.kube, name)

    def pods(self, name: str) -> list[dict[str, Any]]:
        return [
            p
            for p in self.kube.pods(f"{MD_LABEL}={name}")
            if not p["metadata"].get("deletionTimestamp")
        ]


def model_deployment(
    name: str, model: dict[str, Any], image: str, rollout: dict[str, Any] | None = None
) -> str:
    spec: dict[str, Any] = {
        "model": {"name": MODEL, **model},
        "server": {
            "image": image,
            # This model loaded, not only the server up.
            "readinessPath": f"/v2/models/{MODEL}/ready",
            "readOnlyRootFilesystem": True,
            "resources": SERVER_RESOURCES,
        },
        "replicas": 1,
    }
    if rollout:
        spec["rollout"] = rollout
    return kube_yaml.dump(
        {
            "apiVersion": "vigil.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def http_model(served: Served, version: str, sha256: str) -> dict[str, Any]:
    return {"version": version, "uri": served.http_uri, "sha256": sha256}


def https_model(served: Served, version: str) -> dict[str, Any]:
    storage = {"caConfigMapRef": {"name": "ca", "key": "ca.crt"}}
    return {"version": version, "uri": served.https_uri, "storage": storage}


def s3_model(served: Served, version: str, key: str, secret: str = "reader") -> dict[str, Any]:
    return {"version": version, "uri": f"s3://{BUCKET}/{key}", "storage": served.storage(secret)}


def ready_pods(served: Served, name: str) -> list[dict[str, Any]]:
    """The model's pods once it is Ready with its one pod Ready (else [])."""
    if condition(served.status(name), "Ready").get("status") != "True":
        return []
    pods = served.pods(name)
    ready_ones = [p for p in pods if ready(p)]
    return ready_ones if len(ready_ones) == len(pods) == 1 else []


@pytest.fixture(scope="module")
def served(
    cluster: ClusterClient, real_node: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    namespace = f"e2e-artifacts-op-{secrets.token_hex(3)}"
    operator = InClusterOperator(cluster, namespace=namespace, watch=(namespace,))
    try:
        images = ensure_images(["vigil", "mlserver-sklearn"])
        busybox, weed = busybox_image(), seaweedfs_image()
        real_node.node().load_images([*images.values(), busybox, weed])
        # The overlay brings the namespace: PodSecurity restricted, pods on the real node.
        operator.deploy(real_node, images["vigil"])
        cluster.kubectl("label", "namespace", namespace, "vigil.dev/e2e=true", "--overwrite")
        model = train_wine(tmp_path_factory.mktemp("served") / MODEL, version="1", seed=0)
        # The folder's files at the archive's top: /mnt/models as MLServer's repository.
        model_tar = archive({p.name: p.read_bytes() for p in sorted(model.folder.iterdir())})
        escape = archive({"model-settings.json": b"{}", "../../up": b"x"})
        files = {"model.tar.gz": model_tar, "escape.tar.gz": escape}
        kube = Kube(cluster, namespace)
        kube.apply(*web_objects(busybox.ref, files), down_service())
        apply_tls_server(kube, images["vigil"].ref, tmp_path_factory.mktemp("tls"))
        kube.apply(*store_objects("seaweedfs", weed.ref, {}))
        cluster.kubectl(
            "wait", "pod", "--all", "-n", namespace, "--for=condition=Ready", "--timeout=120s"
        )
        ip = cluster.get_json("service", "seaweedfs", "-n", namespace)["spec"]["clusterIP"]
        store = pod_store(ip, Path(f"kubectl logs -n {namespace} seaweedfs"))
        put_object(store, BUCKET, MODEL_KEY, model_tar)
        put_object(store, BUCKET, BIG_KEY, secrets.token_bytes(BIG_SIZE))
        for secret, key in (("reader", READER.secret_key), ("wrong-keys", "not-the-secret-key")):
            cluster.kubectl(
                "create", "secret", "generic", secret, "-n", namespace,
                f"--from-literal=AWS_ACCESS_KEY_ID={READER.access_key}",
                f"--from-literal=AWS_SECRET_ACCESS_KEY={key}",
            )  # fmt: skip
        ready_after: dict[str, float] = {}
        result = Served(kube, model, images["mlserver-sklearn"].ref, model_tar, ready_after)
        digest = hashlib.sha256(model_tar).hexdigest()
        started = time.monotonic()
        for name, spec in (
            (HTTP, http_model(result, "1", digest)),
            (HTTPS, https_model(result, "1")),
            (S3, s3_model(result, "1", MODEL_KEY)),
        ):
            result.kube.apply(model_deployment(name, spec, result.server_image))

        def all_ready() -> bool:
            for name in (HTTP, HTTPS, S3):
                if name not in ready_after and ready_pods(result, name):
                    ready_after[name] = time.monotonic() - started
            return len(ready_after) == 3

        wait_for(all_ready, timeout=300, what="the three ModelDeployments Ready on one pod each")
        print(f"apply to Ready: {', '.join(f'{k} {v:.1f}s' for k, v in ready_after.items())}")
        # A Ready pod is not yet in kube-proxy's rules: until it is, the ClusterIP refuses.
        for name in (HTTP, HTTPS, S3):
            ModelEndpoint(kube, name, MODEL).wait_serving(replicas=1, timeout=60)
        yield result
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        operator.remove_cluster_objects()


def answers(served: Served, name: str, rows: np.ndarray) -> list[Any]:
    """The v2 outputs of ``rows`` through the ModelDeployment's Service, as a client sends."""
    address = service_address(served.kube.cluster, served.namespace, name)
    request = urllib.request.Request(
        f"http://{address}/v2/models/{MODEL}/infer",
        data=v2_body(rows.tolist()),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return list(json.loads(response.read())["outputs"][0]["data"])


def fetched_marker(served: Served, name: str) -> dict[str, Any]:
    """What vigil-fetch left beside the model in the serving pod (its init container done)."""
    (pod,) = ready_pods(served, name)
    (init,) = pod["status"]["initContainerStatuses"]
    assert init["state"]["terminated"]["exitCode"] == 0, init
    marker = served.kube.run("exec", pod["metadata"]["name"], "-c", "server", "--", "cat", MARKER)
    return dict(json.loads(marker.stdout))


# -- served ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [HTTP, HTTPS, S3])
def test_the_fetched_model_answers_through_the_service_as_trained(
    served: Served, name: str
) -> None:
    marker = fetched_marker(served, name)
    # The http one names its digest (checked), the others none.
    expected = {
        HTTP: (served.http_uri, hashlib.sha256(served.model_tar).hexdigest()),
        HTTPS: (served.https_uri, None),
        S3: (f"s3://{BUCKET}/{MODEL_KEY}", None),
    }[name]
    assert (marker["uri"], marker["sha256"]) == expected, marker
    rows = served.model.X[::20]
    predicted = served.model.predict(rows)
    assert np.array_equal(np.asarray(answers(served, name, rows)), predicted)


# -- a replacement whose artifact fails: the stable keeps serving -----------------------------


def candidate_gone(served: Served, name: str, stable: str) -> bool:
    revisions = {p["metadata"]["labels"].get("vigil.dev/revision") for p in served.pods(name)}
    deployments = served.kube.items("deployments", f"{MD_LABEL}={name}")
    return revisions == {stable} and len(deployments) == 1


def broken_model(served: Served, broken: str) -> tuple[dict[str, Any], str]:
    """A replacement's ``spec.model`` that cannot be fetched, and how the fetcher's words start
    (each a new version: every case is a replacement of its own)."""
    if broken == "wrong digest":
        actual = hashlib.sha256(served.model_tar).hexdigest()
        words = f"{served.http_uri}: sha256 mismatch: expected {'0' * 64}, got {actual}"
        return http_model(served, "2", "0" * 64), words
    if broken == "escaping archive":
        uri = served.http_uri.replace("model.tar.gz", "escape.tar.gz")
        words = f"{uri}: archive member '../../up' escapes the destination folder"
        return {"version": "3", "uri": uri}, words
    if broken == "missing object":
        model = s3_model(served, "2", "wine/2/model.tar.gz")
        return model, f"{model['uri']}: 404 Not Found: NoSuchKey"
    if broken == "refusing host":
        host = f"down.{served.namespace}.svc"
        uri = f"http://{host}/model.tar.gz"
        words = f"{uri}: cannot connect to {host}: connection refused (gave up after 6 attempts"
        return {"version": "4", "uri": uri}, words
    if broken == "full disk":
        model = {**s3_model(served, "5", BIG_KEY), "fetch": {"sizeLimit": "1Mi"}}
        return model, 'the pod was evicted: Usage of EmptyDir volume "vigil-model" exceeds'
    if broken == "missing secret":
        model = s3_model(served, "4", MODEL_KEY, secret="no-such-keys")
        words = 'spec.model.storage.secretRef: CreateContainerConfigError: secret "no-such-keys"'
        return model, words
    model = s3_model(served, "3", MODEL_KEY, secret="wrong-keys")
    return model, f"{model['uri']}: 403 Forbidden: SignatureDoesNotMatch"


@pytest.mark.parametrize(
    ("name", "broken"),
    [
        (HTTP, "wrong digest"),
        (S3, "missing object"),
        (HTTP, "escaping archive"),
        (S3, "wrong keys"),
        (S3, "missing secret"),
        # Transient: retried in the pod, so it fails at the rollout's progress deadline.
        (HTTP, "refusing host"),
        # What a full disk is for a pod: its model folder past fetch.sizeLimit, evicted.
        (S3, "full disk"),
    ],
)
def test_a_replacement_that_cannot_be_fetched_fails_while_the_stable_serves(
    served: Served, name: str, broken: str
) -> None:
    stable = served.status(name)["stable"]["revision"]
    model, words = broken_model(served, broken)
    traffic = TrafficGenerator(
        served.kube.cluster, served.namespace, name, MODEL, served.model.X,
        rate=20.0, through_service=True,
    ).start()  # fmt: skip
    try:
        wait_for(
            lambda: traffic.stats.ok >= 40, timeout=60, what="traffic answered through the Service"
        )
        # Without steps a candidate has the Deployment's own 10 minutes; with one, 120 s.
        rollout = REFUSED_ROLLOUT if broken == "refusing host" else None
        served.kube.apply(model_deployment(name, model, served.server_image, rollout))

        def failed() -> dict[str, Any]:
            # This replacement's words: an earlier one's failure may still be the condition.
            status = served.status(name)
            ready = condition(status, "Ready")
            fetch_failed = ready.get("reason") == "ArtifactFetchFailed"
            return status if fetch_failed and words in ready["message"] else {}

        status = wait_for(
            failed, timeout=240, what=f"{name}'s replacement failing with ArtifactFetchFailed"
        )
        ready = condition(status, "Ready")
        candidate = status["candidate"]["revision"]
        assert candidate != stable
        wait_for(
            lambda: candidate_gone(served, name, stable), timeout=120, what="the candidate removed"
        )
        sent = traffic.stats.sent
        wait_for(
            lambda: traffic.stats.sent >= sent + 20, timeout=30, what="traffic after the failure"
        )
    finally:
        stats = traffic.stop()
    print(f"{name} ({broken}): {stats}; Ready: {ready['message']}")
    assert ready["status"] == "False", ready
    prefix = f"revision {candidate} could not fetch its model: {words}"
    assert ready["message"].startswith(prefix), ready["message"]
    assert ready["message"].endswith(f"; revision {stable} keeps serving"), ready["message"]
    assert status["candidate"]["outcome"] == "Failed", status["candidate"]
    assert status["candidate"]["weight"] == 0, status["candidate"]
    assert status["stable"]["revision"] == stable
    events = [
        e for e in served.kube.events("ArtifactFetchFailed") if e["involvedObject"]["name"] == name
    ]
    assert events and {e["type"] for e in events} == {"Warning"}, events
    assert any(e["message"].startswith(prefix) for e in events), events
    selector = served.kube.get("service", name)["spec"]["selector"]  # type: ignore[index]
    assert selector.get("vigil.dev/revision") == stable, selector
    assert stats.failed == 0, stats.failures
    assert stats.ok >= 60, stats
