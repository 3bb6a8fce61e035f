"""A demo-like hour in a real Prometheus, and the report made from it.

history.py writes the hour as OpenMetrics; ``promtool tsdb create-blocks-from
openmetrics`` turns it into blocks of a fresh TSDB; the cached Prometheus
(hack/build-cluster.sh) serves them on a loopback port; the report reads them
with its range queries, as ``kubectl vigil report`` does.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vigil.devcluster.cluster import ClusterError, build_binaries
from vigil.devcluster.common import free_port
from vigil.plugin.report.figures import Context, build
from vigil.plugin.report.page import render

sys.path.insert(0, str(Path(__file__).parent))
import history


@dataclass(frozen=True)
class MadeReport:
    html: Path
    numbers: dict[str, Any]
    seconds: float


@contextlib.contextmanager
def serving_history(work: Path, namespace: str = history.NAMESPACE) -> Iterator[tuple[str, float]]:
    """A real Prometheus holding the hour (of ``namespace``) before the returned end time."""
    try:
        bin_dir = build_binaries(log=lambda line: print(line, flush=True))
    except ClusterError as error:
        pytest.fail(f"Prometheus is not built: {error}", pytrace=False)
    with history.serve(bin_dir, work, free_port(), namespace) as served:
        yield served


@pytest.fixture(scope="session")
def serve_history() -> Callable[..., contextlib.AbstractContextManager[tuple[str, float]]]:
    """:func:`serving_history`, for a test that serves its own namespace's hour."""
    return serving_history


@pytest.fixture(scope="session")
def history_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, float]]:
    with serving_history(tmp_path_factory.mktemp("report-prometheus")) as served:
        yield served


@pytest.fixture(scope="session")
def demo_like_report(
    history_prometheus: tuple[str, float], tmp_path_factory: pytest.TempPathFactory
) -> MadeReport:
    """The report over the hour, made as ``kubectl vigil report`` makes it."""
    url, end = history_prometheus
    profile, _, _ = history.reference()
    started = time.monotonic()
    measured = history.measure(url, end)
    context = Context(history.model_deployment(end), history.events(end), profile, generated_at=end)
    numbers = build(context, measured)
    html = tmp_path_factory.mktemp("report") / "wine-report.html"
    html.write_text(render(numbers), encoding="utf-8")
    return MadeReport(html, numbers, time.monotonic() - started)
