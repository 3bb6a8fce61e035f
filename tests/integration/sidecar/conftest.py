"""Real model servers for the sidecar integration tests.

MLServer 1.7.1 + mlserver-sklearn run from ``.venv-mlserver`` (``make install``)
as separate processes, serving models trained here on scikit-learn's wine
data. Anything missing makes the tests fail with a message saying what.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import sklearn
from integration_kit import (
    MLSERVER_BIN,
    MLSERVER_PY,
    REPO,
    running,
    stop,
    wait_http_ok,
)
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from vigil.devcluster.common import free_port
from vigil.devcluster.models import write_mlserver_folder, write_mlserver_settings
from vigil.profile import build_profile

MLSERVER_START_TIMEOUT = 120.0


@dataclass
class Wine:
    x: np.ndarray
    y: np.ndarray
    names: list[str]
    model_path: Path
    shuffled_path: Path
    profile_path: Path


@dataclass
class Server:
    url: str
    port: int
    log: Path


def _require_mlserver() -> None:
    if not MLSERVER_PY.exists() or not MLSERVER_BIN.exists():
        pytest.fail(f"MLServer environment missing: {MLSERVER_BIN} not found; run `make install`")
    out = subprocess.run(
        [
            str(MLSERVER_PY),
            "-c",
            "import sklearn, mlserver; print(sklearn.__version__, mlserver.__version__)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode != 0:
        pytest.fail(f"MLServer environment broken: {out.stderr[-2000:]}")
    their_sklearn, their_mlserver = out.stdout.split()
    if their_sklearn != sklearn.__version__:
        pytest.fail(
            f"scikit-learn differs: .venv has {sklearn.__version__}, .venv-mlserver has "
            f"{their_sklearn}; models pickled here may not load there. Pin the same version."
        )
    if their_mlserver != "1.7.1":
        pytest.fail(f"expected MLServer 1.7.1 in .venv-mlserver, found {their_mlserver}")


@pytest.fixture(scope="session")
def wine(tmp_path_factory) -> Wine:
    """Train at test time: the real model and one trained on shuffled labels."""
    root = tmp_path_factory.mktemp("wine")
    data = load_wine()
    x, y = np.asarray(data.data, dtype=np.float64), np.asarray(data.target)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x, y)
    rng = np.random.default_rng(42)
    shuffled = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(
        x, rng.permutation(y)
    )
    model_path, shuffled_path = root / "model.joblib", root / "shuffled.joblib"
    joblib.dump(model, model_path)
    joblib.dump(shuffled, shuffled_path)
    names = [n.replace("/", "_") for n in data.feature_names]
    profile = build_profile(
        x, predictions=model.predict(x), feature_names=names, model_name="wine", model_version="1"
    )
    profile_path = root / "profile.json"
    profile_path.write_text(profile.to_json())
    return Wine(x, y, names, model_path, shuffled_path, profile_path)


def _mlserver(root: Path, model_path: Path) -> Iterator[Server]:
    write_mlserver_folder(root / "wine", "wine", "v1", model_path)
    port = free_port()
    write_mlserver_settings(root, http_port=port, grpc_port=free_port(), metrics_port=free_port())
    log = root / "mlserver.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("VIRTUAL_ENV", None)
    with running([str(MLSERVER_BIN), "start", str(root)], log, cwd=root, env=env) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/v2/models/wine/ready", proc, MLSERVER_START_TIMEOUT, log)
        yield Server(url, port, log)


@pytest.fixture(scope="session")
def mlserver(wine, tmp_path_factory) -> Iterator[Server]:
    """MLServer serving the real wine model."""
    _require_mlserver()
    yield from _mlserver(tmp_path_factory.mktemp("mlserver-stable"), wine.model_path)


@pytest.fixture(scope="session")
def mlserver_shuffled(wine, tmp_path_factory) -> Iterator[Server]:
    """MLServer serving the model trained on shuffled labels (a bad candidate)."""
    _require_mlserver()
    yield from _mlserver(tmp_path_factory.mktemp("mlserver-shuffled"), wine.shuffled_path)


@pytest.fixture(scope="session")
def kserve_v1(wine, tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("kserve-v1")
    port = free_port()
    log = root / "v1.log"
    script = Path(__file__).with_name("kserve_v1_server.py")
    with running(
        [sys.executable, str(script), str(wine.model_path), "wine", "127.0.0.1", str(port)], log
    ) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/v1/models/wine", proc, 60, log)
        yield Server(url, port, log)


@dataclass
class RunningSidecar:
    port: int
    metrics_port: int
    config: Path
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def sidecar(tmp_path) -> Iterator[Callable[..., RunningSidecar]]:
    """Factory: run the real ``vigil-sidecar`` with a settings file; always stopped."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        settings: dict[str, Any], name: str = "sidecar", wait: str = "/healthz/ready"
    ) -> RunningSidecar:
        port, mport = free_port(), free_port()
        doc = {
            **settings,
            "listen": {"host": "127.0.0.1", "port": port},
            "metrics": {"host": "127.0.0.1", "port": mport},
        }
        config = tmp_path / f"{name}.json"
        config.write_text(json.dumps(doc))
        log = tmp_path / f"{name}.log"
        out = log.open("wb")
        env = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
        env.pop("VIGIL_SIDECAR_CONFIG", None)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vigil.sidecar.main",
                "--config",
                str(config),
                "--listen-host",
                "127.0.0.1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        out.close()
        procs.append(proc)
        wait_http_ok(f"http://127.0.0.1:{port}{wait}", proc, 30, log)
        return RunningSidecar(port, mport, config, log, proc)

    try:
        yield start
    finally:
        for proc in procs:
            stop(proc)
