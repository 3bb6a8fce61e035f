"""Golden-set validation against real MLServer processes (wine classifier, v2 protocol).

A golden set built from the good model (its research-time outputs, and the
same built by asking its running endpoint) is reproduced by the same model
served by MLServer, and is not by a model trained on shuffled labels.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import joblib
import pytest

from vigil.cli import main
from vigil.devcluster.common import free_port
from vigil.devcluster.models import TrainedModel, train_wine
from vigil.validation.golden import parse_golden_set, replay_report

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
MLSERVER = REPO / ".venv-mlserver" / "bin" / "mlserver"
START_TIMEOUT = 180.0


@contextlib.contextmanager
def mlserver(folder: Path) -> Iterator[str]:
    """``mlserver start <folder>`` on free loopback ports; yields its base URL."""
    if not MLSERVER.exists():
        pytest.fail(f"{MLSERVER} not found: run `make install` (MLServer venv)", pytrace=False)
    port = free_port()
    env = {
        **os.environ,
        "MLSERVER_HOST": "127.0.0.1",
        "MLSERVER_HTTP_PORT": str(port),
        "MLSERVER_GRPC_PORT": str(free_port()),
        "MLSERVER_METRICS_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("VIRTUAL_ENV", None)
    log = folder.parent / f"{folder.name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(MLSERVER), "start", str(folder)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlserver exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/v2/models/wine/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"mlserver not ready in {START_TIMEOUT:.0f}s:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[TrainedModel, TrainedModel]:
    root = tmp_path_factory.mktemp("golden-models")
    good = train_wine(root / "good", version="1")
    bad = train_wine(root / "bad", version="2", shuffled_labels=True)
    return good, bad


def test_golden_set_passes_on_the_good_model_and_fails_on_the_bad(models, tmp_path):
    good, bad = models
    rows = good.X.tolist()
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    # The research environment's outputs: the trained estimator's predictions.
    estimator = joblib.load(good.folder / "model.joblib")
    (tmp_path / "expected.json").write_text(json.dumps(estimator.predict(good.X).tolist()))
    research = tmp_path / "golden-research.json"
    assert (
        main(
            [
                "golden",
                "build",
                str(tmp_path / "rows.json"),
                "--expected",
                str(tmp_path / "expected.json"),
                "--model",
                "wine",
                "-o",
                str(research),
            ]
        )
        == 0
    )
    golden = parse_golden_set(research.read_text())
    assert len(golden.inputs) == 178

    with mlserver(good.folder) as good_url, mlserver(bad.folder) as bad_url:
        # Built from the running good model: the same outputs as research.
        served = tmp_path / "golden-served.json"
        assert (
            main(
                [
                    "golden",
                    "build",
                    str(tmp_path / "rows.json"),
                    "--from-endpoint",
                    good_url,
                    "--model",
                    "wine",
                    "-o",
                    str(served),
                ]
            )
            == 0
        )
        assert parse_golden_set(served.read_text()).expected == golden.expected

        report = asyncio.run(replay_report(golden, good_url, batch_size=32, timeout_seconds=60))
        assert report.result.total == 178
        assert report.result.agreement == 1.0, report.summary()
        assert not report.errors

        shuffled = asyncio.run(replay_report(golden, bad_url, batch_size=32, timeout_seconds=60))
        assert shuffled.result.total == 178
        assert shuffled.result.agreement < 0.6, shuffled.summary()
        assert shuffled.mismatches

        # The CLI check says the same, with its exit code.
        assert main(["golden", "check", str(research), "--endpoint", good_url]) == 0
        assert main(["golden", "check", str(research), "--endpoint", bad_url]) == 1
