"""A demo-like hour in a real Prometheus, and the report made from it.

history.py writes the hour as OpenMetrics; ``promtool tsdb create-blocks-from
openmetrics`` turns it into blocks of a fresh TSDB; the cached Prometheus
(hack/build-cluster.sh) serves them on a loopback port; the report reads them
with its range queries, as ``kubectl vigil report`` does.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kit.kube import free_port
from kit.waits import wait_for

from vigil.devcluster.cluster import ClusterError, build_binaries
from vigil.plugin.report.figures import Context, build
from vigil.plugin.report.page import render
from vigil.plugin.report.sources import choose_step, from_prometheus

sys.path.insert(0, str(Path(__file__).parent))
import history


@dataclass(frozen=True)
class MadeReport:
    html: Path
    numbers: dict[str, Any]
    seconds: float


@pytest.fixture(scope="session")
def history_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, float]]:
    """Prometheus holding the hour before the returned end time."""
    try:
        bin_dir = build_binaries(log=lambda line: print(line, flush=True))
    except ClusterError as error:
        pytest.fail(f"Prometheus is not built: {error}", pytrace=False)
    work = tmp_path_factory.mktemp("report-prometheus")
    end = float(int(time.time()) - 60)
    text, _ = history.openmetrics(end)
    (work / "hour.om").write_text(text)
    subprocess.run(
        [
            str(bin_dir / "promtool"),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(work / "hour.om"),
            str(work / "tsdb"),
        ],
        check=True,
        capture_output=True,
    )
    (work / "prometheus.yml").write_text("global: {}\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (work / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                str(bin_dir / "prometheus"),
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer:
                    return answer.status == 200
            except OSError:
                return False

        wait_for(ready, timeout=60, what=f"Prometheus at {url} (log {work / 'prometheus.log'})")
        yield url, end
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture(scope="session")
def demo_like_report(
    history_prometheus: tuple[str, float], tmp_path_factory: pytest.TempPathFactory
) -> MadeReport:
    """The report over the hour, made as ``kubectl vigil report`` makes it."""
    url, end = history_prometheus
    profile, _, _ = history.reference()
    started = time.monotonic()
    measured = asyncio.run(
        from_prometheus(
            url,
            history.NAMESPACE,
            history.NAME,
            start=end - history.SPAN,
            end=end,
            step=choose_step(history.SPAN),
            window_seconds=120.0,
            progress=lambda text: None,
        )
    )
    context = Context(history.model_deployment(end), history.events(end), profile, generated_at=end)
    numbers = build(context, measured)
    html = tmp_path_factory.mktemp("report") / "wine-report.html"
    html.write_text(render(numbers), encoding="utf-8")
    return MadeReport(html, numbers, time.monotonic() - started)
