"""The workload runner gives kwok pods real processes: the sidecar in front of MLServer.

Plain Deployment here (no operator), so the runner is tested on its own: a
pod's containers run on the pod's IP, its ConfigMap volumes become files that
follow the ConfigMap, and its processes stop when the pod goes away.
"""

from __future__ import annotations

import json
from pathlib import Path

from kit.kube import MD_LABEL, Kube, pod_ip
from kit.metrics import total
from kit.modelpods import deployment, reference_configmap, sidecar_configmap, sidecar_settings
from kit.traffic import answers_ready, http, infer_body, pod_metrics, sidecar_url
from kit.waits import wait_for

from vigil.core.desired import SIDECAR_LIVE_PATH
from vigil.devcluster.models import train_wine


def test_pod_processes_serve_on_the_pod_ip_and_follow_the_pod(
    kube: Kube, workload_runner: Path, tmp_path: Path
) -> None:
    model = train_wine(tmp_path / "wine")
    kube.apply(
        sidecar_configmap("wine", sidecar_settings()),
        reference_configmap(model),
        deployment("wine", model, revision="r1"),
    )
    kube.rollout_status("wine")
    ip = pod_ip(kube.pods(f"{MD_LABEL}=wine")[0])

    wait_for(
        lambda: answers_ready(ip),
        timeout=120,
        what=f"sidecar+MLServer on {ip} to be ready; see {workload_runner}",
    )
    status, body = http(sidecar_url(ip, "/v2/models/wine/infer"), infer_body(model.X[:20]))
    assert status == 200, body
    predictions = json.loads(body)["outputs"][0]["data"]
    assert len(predictions) == 20

    wait_for(
        lambda: total(pod_metrics(ip), "vigil_input_rows_total") >= 20,
        timeout=20,
        what="the rows to be counted",
    )
    text = pod_metrics(ip)
    assert 'revision="r1"' in text
    assert total(text, "vigil_feature_bin_total") >= 20 * 13

    # The ConfigMap changes; the file in the pod follows and the sidecar reloads it.
    kube.apply(sidecar_configmap("wine", sidecar_settings(log_level="debug")))
    wait_for(
        lambda: total(pod_metrics(ip), "vigil_settings_reloads_total", outcome="applied") >= 1,
        timeout=30,
        what="the sidecar to apply the changed settings",
    )

    # The pod goes away: its processes stop.
    kube.run("delete", "deployment", "wine")
    wait_for(
        lambda: http(sidecar_url(ip, SIDECAR_LIVE_PATH))[0] == 0,
        timeout=60,
        what="the pod's processes to stop answering after the pod was deleted",
    )
