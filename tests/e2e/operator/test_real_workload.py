"""The operator in the cluster, its pods for real: MLServer behind the sidecar on the real node.

The operator runs as the manifests' Deployment (its image, its ServiceAccount,
only its RBAC); the model pods it makes are containers of the images built
here, the model on a local volume (``pvc://models/wine``). So this test checks
what only a running pod can: the sidecar accepts the operator's settings file
and command line, finds the reference profile where the operator mounted it,
forwards to the model server the operator configured, and labels its metrics
with the revision the operator computed; requests go through the Service, as
a client's would.
"""

from __future__ import annotations

import json

from kit.incluster import InClusterOperator, RealNamespace
from kit.kube import Kube, pod_ip
from kit.metrics import samples
from kit.modeldeployment import MLSERVER_IMAGE
from kit.status import stable, status
from kit.traffic import ModelEndpoint, http, infer_body, pod_metrics
from kit.waits import wait_for

from vigil.devcluster.models import train_wine
from vigil.devcluster.traffic import service_address


def service_infer_url(kube: Kube) -> str:
    """The model's infer URL at its Service's ClusterIP (kube-proxy picks the pod)."""
    return f"http://{service_address(kube.cluster, kube.namespace, 'wine')}/v2/models/wine/infer"


def test_a_model_deployment_serves_predictions_through_its_sidecar(
    kube: Kube, on_real_node: RealNamespace, incluster_operator: InClusterOperator
) -> None:
    operator = incluster_operator
    model = train_wine(on_real_node.folder / "wine")
    kube.run(
        "create", "configmap", "wine-reference", f"--from-file=profile.json={model.profile_path}"
    )
    manifest = {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "wine"},
        "spec": {
            "model": {"name": "wine", "version": "1", "uri": model.storage_uri},
            "server": {"image": MLSERVER_IMAGE, "protocol": "v2"},
            "replicas": 1,
            "monitoring": {
                "reference": {"configMapKeyRef": {"name": "wine-reference", "key": "profile.json"}}
            },
        },
    }
    manifest = on_real_node.place(manifest)
    kube.apply(manifest)
    kube.wait_ready("md/wine", timeout=180)
    revision = status(kube)["stable"]["revision"]
    (pod,) = kube.revision_pods(revision)
    ip = pod_ip(pod)
    endpoint = ModelEndpoint(kube)

    endpoint.wait_serving(timeout=180)
    body = infer_body(model.X[:20])
    code, answer = http(service_infer_url(kube), body)
    assert code == 200, answer
    assert len(json.loads(answer)["outputs"][0]["data"]) == 20

    wait_for(
        lambda: any(s.value >= 20 for s in samples(pod_metrics(ip), "vigil_input_rows_total")),
        timeout=30,
        what="the sidecar to count the 20 rows",
    )
    text = pod_metrics(ip)
    (info,) = samples(text, "vigil_model_info")
    expected = {"revision": revision, "role": "stable", "model": "wine", "version": "1"}
    assert expected.items() <= info.labels.items(), info
    # The mounted profile was found.
    assert info.labels.get("reference_fingerprint", "").startswith("sha256:"), info
    assert samples(text, "vigil_feature_bin_total"), "no drift counts: reference not loaded"
    operator.assert_no_errors()

    # Blue/green to version 2: the new pod serves before the old one goes away.
    manifest["spec"]["model"]["version"] = "2"
    kube.apply(manifest)
    wait_for(
        lambda: stable(status(kube)).get("revision") not in (None, revision),
        timeout=180,
        interval=1,
        what="the switch to version 2",
    )
    kube.wait_ready("md/wine", timeout=180)
    new_revision = status(kube)["stable"]["revision"]
    (new_pod,) = kube.revision_pods(new_revision)
    new_ip = pod_ip(new_pod)
    endpoint.wait_serving(timeout=180)
    code, answer = http(service_infer_url(kube), body)
    assert code == 200, answer
    (info,) = samples(pod_metrics(new_ip), "vigil_model_info")
    assert {"revision": new_revision, "version": "2"}.items() <= info.labels.items(), info
    # The old revision's pod is gone once the Service moved.
    wait_for(
        lambda: not kube.revision_pods(revision),
        timeout=60,
        what="the old revision's pod to go away",
    )
    operator.assert_no_errors()
