"""Fake sidecars that bin their inputs (and numeric predictions) by the reference profile
each started with, and the two ways a metrics source reads them: the direct source (each
pod's scrapes apart) and one that sums a revision's pods (as Prometheus does).

Shared by the tests of a reference ConfigMap edited in place (health loop and rollouts).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vigil.core.window import Scrape
from vigil.metrics import Collection, PodTarget, RevisionTarget
from vigil.metrics.direct import DirectSource
from vigil.metrics.exposition import parse_sidecar_metrics
from vigil.profile import ReferenceProfile
from vigil.profile.bins import bin_index


class Sidecar:
    """One pod's sidecar: counts two normal inputs (``shift`` added) in the bins of the
    profile it started with, and their sum as the prediction when the profile bins it."""

    def __init__(
        self, profile: ReferenceProfile, seed: int, started_at: float, revision: str = "r1"
    ) -> None:
        self.profile = profile
        self.random = np.random.default_rng(seed)
        self.started_at = started_at
        self.revision = revision
        self.shift = 0.0
        self.rows = 0
        #: While True, it answers as many errors as it serves rows (an outage).
        self.failing = False
        self.errors = 0
        self.bins = {f.name: np.zeros(len(f.proportions)) for f in profile.features}
        edges = profile.prediction.edges if profile.prediction is not None else None
        self.predicted = np.zeros(len(edges) + 1) if edges is not None else None
        self.sum = self.squares = 0.0

    def serve(self, rows: int) -> None:
        values = self.random.normal(size=(rows, 2)) + self.shift
        for feature in self.profile.features:
            slots = bin_index(values[:, feature.index], feature.edges)
            self.bins[feature.name] += np.bincount(slots, minlength=len(feature.proportions))
        if self.predicted is not None:
            predictions = values[:, 0] + values[:, 1]
            edges = self.profile.prediction.edges  # type: ignore[union-attr]
            self.predicted += np.bincount(bin_index(predictions, edges), minlength=len(edges) + 1)
            self.sum += float(predictions.sum())
            self.squares += float((predictions**2).sum())
        self.rows += rows
        if self.failing:
            self.errors += rows

    def text(self) -> str:
        base = f'model="wine",version="1",revision="{self.revision}",role="stable"'
        infer = f'{base},endpoint="infer",origin="live"'
        lines = [
            f"vigil_sidecar_start_time_seconds{{{base}}} {self.started_at}",
            f'vigil_request_outcomes_total{{{infer},outcome="success"}} {self.rows}',
            f'vigil_request_duration_seconds_bucket{{{infer},le="0.1"}} {self.rows}',
            f'vigil_request_duration_seconds_bucket{{{infer},le="+Inf"}} {self.rows + self.errors}',
            f"vigil_input_rows_total{{{base}}} {self.rows}",
        ]
        if self.errors:
            lines.append(f'vigil_request_outcomes_total{{{infer},outcome="error"}} {self.errors}')
        if self.predicted is not None:
            lines += [
                f"vigil_predictions_total{{{base}}} {self.rows}",
                f"vigil_prediction_value_sum{{{base}}} {self.sum}",
                f"vigil_prediction_value_squares_sum{{{base}}} {self.squares}",
            ]
            lines += [
                f'vigil_prediction_bin_total{{{base},bin="{slot}"}} {count}'
                for slot, count in enumerate(self.predicted)
            ]
        for name, counts in self.bins.items():
            lines += [
                f'vigil_feature_bin_total{{{base},feature="{name}",bin="{slot}"}} {count}'
                for slot, count in enumerate(counts)
            ]
        return "\n".join(lines) + "\n"


class Sidecars(DirectSource):
    """The direct source, its GET answered by the pod's sidecar (which served ``rows`` since
    the last one)."""

    def __init__(self, rows: int) -> None:
        super().__init__()
        self.rows = rows
        self.sidecars: dict[str, Sidecar] = {}

    async def _scrape(self, pod: PodTarget, now: float) -> Scrape | str:
        sidecar = self.sidecars[pod.name]
        sidecar.serve(self.rows)
        values, started_at = parse_sidecar_metrics(sidecar.text())
        return Scrape(at=now, started_at=started_at, values=values)


class SummedByRevision:
    """Prometheus: every pod's increase over the window (gone pods' too), summed per
    revision; nothing tells one pod's counts from another's."""

    name = "prometheus"

    def __init__(self, sidecars: Sidecars) -> None:
        self.sidecars = sidecars

    async def collect(self, targets: Sequence[RevisionTarget], now: float) -> Collection:
        return await self.sidecars.collect(targets, now)

    def forget(self, namespace: str, name: str) -> None:
        pass

    async def close(self) -> None:
        pass
