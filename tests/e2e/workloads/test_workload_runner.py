"""The workload runner gives kwok pods real processes: the sidecar in front of MLServer.

Plain Deployment here (no operator), so the runner is tested on its own: a
pod's containers run on the pod's IP, its ConfigMap volumes become files that
follow the ConfigMap, and its processes stop when the pod goes away.
"""

from __future__ import annotations

import json
from pathlib import Path

from model_pods import http, manifests, metric, sidecar_settings, wait_for

from vigil.devcluster import ClusterClient
from vigil.devcluster.models import train_wine


def test_pod_processes_serve_on_the_pod_ip_and_follow_the_pod(
    cluster: ClusterClient, namespace: str, workload_runner: Path, tmp_path: Path
) -> None:
    model = train_wine(tmp_path / "wine")
    for manifest in manifests(model, sidecar_settings()):
        cluster.apply(json.dumps(manifest), namespace=namespace)
    cluster.kubectl("rollout", "status", "deployment/wine", "-n", namespace, "--timeout=60s")
    pod = cluster.get_json("pods", "-n", namespace, "-l", "vigil.dev/model-deployment=wine")[
        "items"
    ][0]
    ip = pod["status"]["podIP"]

    wait_for(
        lambda: http(f"http://{ip}:8000/healthz/ready")[0] == 200,
        120,
        f"sidecar+MLServer on {ip} never became ready; see {workload_runner}",
    )
    rows = model.X[:20].tolist()
    request = {"inputs": [{"name": "input-0", "shape": [20, 13], "datatype": "FP64", "data": rows}]}
    status, body = http(f"http://{ip}:8000/v2/models/wine/infer", json.dumps(request).encode())
    assert status == 200, body
    predictions = json.loads(body)["outputs"][0]["data"]
    assert len(predictions) == 20

    def metrics() -> str:
        return http(f"http://{ip}:9090/metrics")[1].decode()

    wait_for(lambda: metric(metrics(), "vigil_input_rows_total") >= 20, 20, "rows not counted")
    text = metrics()
    assert 'revision="r1"' in text
    assert metric(text, "vigil_feature_bin_total") >= 20 * 13

    # The ConfigMap changes; the file in the pod follows and the sidecar reloads it.
    cluster.apply(json.dumps(manifests(model, sidecar_settings("debug"))[0]), namespace=namespace)
    wait_for(
        lambda: metric(metrics(), "vigil_settings_reloads_total", outcome="applied") >= 1,
        30,
        "the sidecar never applied the changed settings",
    )

    # The pod goes away: its processes stop.
    cluster.kubectl("delete", "deployment", "wine", "-n", namespace)
    wait_for(
        lambda: http(f"http://{ip}:8000/healthz/live")[0] == 0,
        60,
        "the pod's processes still answer after the pod was deleted",
    )
