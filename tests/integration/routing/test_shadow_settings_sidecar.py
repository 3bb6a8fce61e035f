"""The shadow router's settings, applied at run time by a real sidecar in front of MLServer.

The stable revision's sidecar settings come from the operator's desired
ConfigMap (``vigil.core.desired``); ``vigil.routing.shadow`` adds and later
removes the ``shadow`` block, the file is swapped as a ConfigMap update
would, and the running sidecar starts, then stops, copying requests to the
candidate (a model trained on shuffled labels) and measuring agreement.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from vigil.core import naming
from vigil.core.desired import Owner, RevisionInfo, desired_configmap
from vigil.core.rollout import Traffic
from vigil.core.spec import parse_spec
from vigil.devcluster.common import free_port
from vigil.devcluster.models import train_wine
from vigil.routing.base import RoutingTarget
from vigil.routing.shadow import shadow_for, with_shadow, without_shadow

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
MLSERVER = REPO / ".venv-mlserver" / "bin" / "mlserver"


def get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_ok(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args!r} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            if get(url)[0] == 200:
                return
        time.sleep(0.3)
    pytest.fail(f"{url} not ready after {timeout:.0f}s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def process(
    args: list[str], log: Path, env: dict[str, str], cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def mlserver(folder: Path) -> Iterator[str]:
    if not MLSERVER.exists():
        pytest.fail(f"{MLSERVER} not found: run `make install` (MLServer venv)", pytrace=False)
    port = free_port()
    env = {
        **os.environ,
        "MLSERVER_HOST": "127.0.0.1",
        "MLSERVER_HTTP_PORT": str(port),
        "MLSERVER_GRPC_PORT": str(free_port()),
        "MLSERVER_METRICS_PORT": str(free_port()),
    }
    env.pop("VIRTUAL_ENV", None)
    log = folder.parent / f"{folder.name}.log"
    with process([str(MLSERVER), "start", str(folder)], log, env, cwd=folder) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_ok(f"{url}/v2/models/wine/ready", proc, log, 180)
        yield url


def metric(port: int, name: str, **labels: str) -> float:
    _, body = get(f"http://127.0.0.1:{port}/metrics")
    total = 0.0
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def swap(path: Path, text: str) -> None:
    """Replace the file atomically, as the kubelet swaps a ConfigMap volume's symlink."""
    temp = path.with_suffix(".new")
    temp.write_text(text)
    os.replace(temp, path)


def wait_for(check, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_shadow_block_turns_copies_on_and_off_in_a_running_sidecar(tmp_path):
    good = train_wine(tmp_path / "stable", version="1")
    bad = train_wine(tmp_path / "candidate", version="2", shuffled_labels=True)
    spec = parse_spec(
        "wine",
        {"model": {"name": "wine", "version": "1"}, "server": {"image": "mlserver"}},
    )
    configmap = desired_configmap(
        Owner("wine", "ml", "uid"), spec, RevisionInfo("aaaaaaa", "id", naming.ROLE_STABLE)
    )
    data = configmap["data"]
    settings = tmp_path / "sidecar.json"
    settings.write_text(data["sidecar.json"])

    with mlserver(good.folder) as stable_url, mlserver(bad.folder) as candidate_url:
        port, metrics_port = free_port(), free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
        env.pop("VIGIL_SIDECAR_CONFIG", None)
        args = [
            sys.executable,
            "-m",
            "vigil.sidecar.main",
            "--config",
            str(settings),
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            str(port),
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(metrics_port),
            "--upstream",
            stable_url,
        ]
        with process(args, tmp_path / "sidecar.log", env) as proc:
            wait_ok(f"http://127.0.0.1:{port}/healthz/ready", proc, tmp_path / "sidecar.log", 30)
            target = RoutingTarget("wine", "ml", stable="aaaaaaa", candidate="bbbbbbb")
            block = shadow_for(target, Traffic(0, 100, 2, 2), target_url=candidate_url)
            swap(settings, with_shadow(data, block)["sidecar.json"])
            wait_for(
                lambda: (
                    metric(metrics_port, "vigil_shadow_percent", target_revision="bbbbbbb") == 100
                ),
                "the sidecar to apply the shadow block",
            )

            def infer(rows: list[list[float]]) -> None:
                body = json.dumps(
                    {
                        "inputs": [
                            {
                                "name": "input-0",
                                "shape": [len(rows), 13],
                                "datatype": "FP64",
                                "data": rows,
                            }
                        ]
                    }
                ).encode()
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/v2/models/wine/infer",
                    data=body,
                    headers={"Content-Type": "application/json"},
                    method="POST",
                )
                with urllib.request.urlopen(request, timeout=10) as response:
                    assert response.status == 200

            rows = good.X.tolist()
            for start in range(0, len(rows), 10):
                infer(rows[start : start + 10])
            wait_for(
                lambda: (
                    metric(
                        metrics_port, "vigil_shadow_predictions_total", target_revision="bbbbbbb"
                    )
                    >= len(rows)
                ),
                "every row to be compared",
            )
            compared = metric(
                metrics_port, "vigil_shadow_predictions_total", target_revision="bbbbbbb"
            )
            agreed = metric(
                metrics_port, "vigil_shadow_agreements_total", target_revision="bbbbbbb"
            )
            assert compared == len(rows)
            assert agreed / compared < 0.6  # the shuffled-labels candidate disagrees

            # Leaving the shadow step: the block goes, copies stop.
            swap(settings, without_shadow(with_shadow(data, block))["sidecar.json"])
            wait_for(
                lambda: (
                    metric(metrics_port, "vigil_shadow_percent", target_revision="bbbbbbb") == 0
                ),
                "the sidecar to drop the shadow block",
            )
            infer(rows[:10])
            time.sleep(1.0)
            assert (
                metric(metrics_port, "vigil_shadow_predictions_total", target_revision="bbbbbbb")
                == compared
            )
