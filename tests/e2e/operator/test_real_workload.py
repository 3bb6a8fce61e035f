"""The operator's pods for real: MLServer behind the sidecar, both started by the workload runner.

kwok pods run nothing; the runner (fixture ``workload_runner``) runs each
pod's containers as local processes on the pod's IP, with the ConfigMaps the
operator wrote mounted as files. So this test checks what only a running pod
can: the sidecar accepts the operator's settings file and command line,
finds the reference profile where the operator mounted it, forwards to the
model server the operator configured, and labels its metrics with the
revision the operator computed.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import yaml
from operator_e2e import Kube, OperatorProcess, wait_for

from vigil.devcluster.models import train_wine


def http(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"} if body else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def samples(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{")]


def test_a_model_deployment_serves_predictions_through_its_sidecar(
    kube: Kube, operator: OperatorProcess, workload_runner: Path, tmp_path: Path
) -> None:
    model = train_wine(tmp_path / "wine")
    kube.run(
        "create", "configmap", "wine-reference", f"--from-file=profile.json={model.profile_path}"
    )
    manifest = {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "wine"},
        "spec": {
            "model": {"name": "wine", "version": "1", "uri": model.storage_uri},
            "server": {"image": "seldonio/mlserver:1.7.1-sklearn", "protocol": "v2"},
            "replicas": 1,
            "monitoring": {
                "reference": {"configMapKeyRef": {"name": "wine-reference", "key": "profile.json"}}
            },
        },
    }
    kube.apply(yaml.safe_dump(manifest))
    kube.run("wait", "--for=condition=Ready", "md/wine", "--timeout=60s")
    md = kube.get("md", "wine")
    assert md is not None
    revision = md["status"]["stable"]["revision"]
    (pod,) = kube.items("pods", f"vigil.dev/revision={revision}")
    ip = pod["status"]["podIP"]

    wait_for(
        lambda: http(f"http://{ip}:8000/healthz/ready")[0] == 200,
        timeout=180,
        interval=1,
        what=f"the sidecar and MLServer on {ip} to be ready (runner logs: {workload_runner})",
    )
    rows = model.X[:20].tolist()
    request = {"inputs": [{"name": "input-0", "shape": [20, 13], "datatype": "FP64", "data": rows}]}
    status, body = http(f"http://{ip}:8000/v2/models/wine/infer", json.dumps(request).encode())
    assert status == 200, body
    assert len(json.loads(body)["outputs"][0]["data"]) == 20

    def metrics() -> str:
        return http(f"http://{ip}:9090/metrics")[1].decode()

    wait_for(
        lambda: any(
            float(line.rsplit(" ", 1)[1]) >= 20
            for line in samples(metrics(), "vigil_input_rows_total")
        ),
        timeout=30,
        what="the sidecar to count the 20 rows",
    )
    text = metrics()
    (info,) = samples(text, "vigil_model_info")
    for label in (f'revision="{revision}"', 'role="stable"', 'model="wine"', 'version="1"'):
        assert label in info, info
    assert 'reference_fingerprint="sha256:' in info  # the mounted profile was found
    assert samples(text, "vigil_feature_bin_total"), "no drift counts: reference not loaded"
    operator.assert_no_errors()

    # Blue/green to version 2: the new pod serves before the old one goes away.
    manifest["spec"]["model"]["version"] = "2"
    kube.apply(yaml.safe_dump(manifest))
    wait_for(
        lambda: (
            (kube.get("md", "wine") or {}).get("status", {}).get("stable", {}).get("revision")
            not in (None, revision)
        ),
        timeout=180,
        interval=1,
        what="the switch to version 2",
    )
    kube.run("wait", "--for=condition=Ready", "md/wine", "--timeout=60s")
    md = kube.get("md", "wine")
    assert md is not None
    new_revision = md["status"]["stable"]["revision"]
    (new_pod,) = kube.items("pods", f"vigil.dev/revision={new_revision}")
    new_ip = new_pod["status"]["podIP"]
    wait_for(
        lambda: http(f"http://{new_ip}:8000/healthz/ready")[0] == 200,
        timeout=180,
        interval=1,
        what=f"the new revision's pod on {new_ip} to serve",
    )
    status, body = http(f"http://{new_ip}:8000/v2/models/wine/infer", json.dumps(request).encode())
    assert status == 200, body
    (info,) = samples(http(f"http://{new_ip}:9090/metrics")[1].decode(), "vigil_model_info")
    assert f'revision="{new_revision}"' in info and 'version="2"' in info, info
    # The old revision's pod is gone once the Service moved.
    assert not kube.items("pods", f"vigil.dev/revision={revision}") or wait_for(
        lambda: not kube.items("pods", f"vigil.dev/revision={revision}"),
        timeout=60,
        what="the old revision's pod to go away",
    )
    operator.assert_no_errors()
