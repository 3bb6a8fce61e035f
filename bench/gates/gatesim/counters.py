"""Synthetic sidecar counters, and the operator's windows over them.

Each revision's sidecars are one vector of cumulative counters laid out by
:class:`Layout` (the families of ``vigil.core.window.FAMILY_LABELS``;
replicas are summed, which is exact: they bin against the same edges).
Live traffic flows in segments of constant routing (:meth:`Stream.flow`):
Poisson arrivals, split between the revisions, failed or answered, copied
to the candidate while a shadow block is live (counted apart, as the
sidecar's ``origin`` label does), binned per feature and per prediction.
The operator scrapes at every cycle (:meth:`Stream.scrape`) and takes each
window as the ``direct`` source does: the increase from the last scrape at
or before the window's start (the step's start: each step judges its own
evidence) to the latest one.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from gatesim.world import CaseWorld, CellModel, prediction_labels
from vigil.core.window import RevisionWindow, SeriesKey, series_key
from vigil.profile import ReferenceProfile
from vigil.sidecar.config import ShadowSettings
from vigil.sidecar.metrics import LATENCY_BUCKETS, origin_of, outcome_of

SUCCESS = outcome_of(200)
ERROR = outcome_of(500)
LIVE, SHADOW = origin_of(False), origin_of(True)
#: Upper bounds of the sidecar's latency buckets, +Inf last.
LATENCY_BOUNDS = (*LATENCY_BUCKETS, math.inf)

# Fixed offsets of the counter vector (all requests, then the shadow copies among them);
# features and predictions follow.
_SUCCESS, _ERROR, _COPY_SUCCESS, _COPY_ERROR, _LATENCY = 0, 1, 2, 3, 4
_COPY_LATENCY = _LATENCY + len(LATENCY_BOUNDS)
_ROWS = _COPY_LATENCY + len(LATENCY_BOUNDS)
_FEATURES = _ROWS + 1
#: No shadow block: no copies.
NO_SHADOW = ShadowSettings()


@dataclass(frozen=True)
class Layout:
    """Where each counter of one revision's sidecars sits in its vector."""

    features: tuple[str, ...]
    feature_slots: int
    prediction_labels: tuple[str, ...]
    classification: bool

    @classmethod
    def of(cls, profile: ReferenceProfile) -> Layout:
        slots = {len(f.proportions) for f in profile.features}
        if len(slots) != 1 or any(f.type != "numeric" for f in profile.features):
            raise ValueError("the simulator models numeric features with one slot count")
        return cls(
            features=profile.feature_names,
            feature_slots=slots.pop(),
            prediction_labels=prediction_labels(profile),
            classification=profile.task == "classification",
        )

    @property
    def latency(self) -> slice:
        return slice(_LATENCY, _COPY_LATENCY)

    @property
    def copy_latency(self) -> slice:
        return slice(_COPY_LATENCY, _ROWS)

    @property
    def feature_bins(self) -> slice:
        return slice(_FEATURES, _FEATURES + len(self.features) * self.feature_slots)

    @property
    def prediction(self) -> slice:
        start = self.feature_bins.stop
        return slice(start, start + len(self.prediction_labels))

    @property
    def predictions(self) -> int:
        return self.prediction.stop

    @property
    def shadow_predictions(self) -> int:
        return self.predictions + 1

    @property
    def shadow_agreements(self) -> int:
        return self.predictions + 2

    @property
    def shadow_difference_sum(self) -> int:
        return self.predictions + 3

    @property
    def shadow_differences(self) -> int:
        return self.predictions + 4

    @property
    def size(self) -> int:
        return self.predictions + 5


class WindowView:
    """One revision's window: the counts, and the ``RevisionWindow`` built on demand.

    ``full`` is what a metrics source returns; ``light`` holds only the
    request and shadow counts (what ``decide`` reads on every cycle).
    """

    def __init__(self, layout: Layout, counts: np.ndarray, shadow_target: str, pods: int) -> None:
        self.layout = layout
        self.counts = counts
        self.shadow_target = shadow_target
        self.pods = pods

    def _shadow(self, index: int) -> dict[str, float]:
        return {self.shadow_target: float(self.counts[index])} if self.shadow_target else {}

    @cached_property
    def light(self) -> RevisionWindow:
        layout, counts = self.layout, self.counts
        return RevisionWindow(
            requests_by_outcome={SUCCESS: float(counts[_SUCCESS]), ERROR: float(counts[_ERROR])},
            copies_by_outcome={
                SUCCESS: float(counts[_COPY_SUCCESS]),
                ERROR: float(counts[_COPY_ERROR]),
            },
            shadow_predictions=self._shadow(layout.shadow_predictions),
            shadow_agreements=self._shadow(layout.shadow_agreements),
            shadow_difference_sum=self._shadow(layout.shadow_difference_sum),
            shadow_differences=self._shadow(layout.shadow_differences),
            pods=self.pods,
        )

    @cached_property
    def full(self) -> RevisionWindow:
        layout, counts = self.layout, self.counts
        cumulative = np.cumsum(counts[layout.latency]).tolist()
        copies = np.cumsum(counts[layout.copy_latency]).tolist()
        rows = counts[layout.feature_bins].reshape(len(layout.features), -1).tolist()
        slots = [str(i) for i in range(layout.feature_slots)]
        predictions = dict(
            zip(layout.prediction_labels, counts[layout.prediction].tolist(), strict=True)
        )
        return RevisionWindow(
            requests_by_outcome=self.light.requests_by_outcome,
            latency_buckets=tuple(zip(LATENCY_BOUNDS, cumulative, strict=True)),
            copies_by_outcome=self.light.copies_by_outcome,
            copy_latency_buckets=tuple(zip(LATENCY_BOUNDS, copies, strict=True)),
            input_rows=float(counts[_ROWS]),
            feature_bins={
                name: dict(zip(slots, row, strict=True))
                for name, row in zip(layout.features, rows, strict=True)
            },
            prediction_classes=predictions if layout.classification else {},
            prediction_bins={} if layout.classification else predictions,
            predictions=float(counts[layout.predictions]),
            shadow_predictions=self.light.shadow_predictions,
            shadow_agreements=self.light.shadow_agreements,
            shadow_difference_sum=self.light.shadow_difference_sum,
            shadow_differences=self.light.shadow_differences,
            pods=self.pods,
        )


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


def sidecar_series(
    layout: Layout, counts: np.ndarray, shadow_target: str
) -> dict[SeriesKey, float]:
    """The counters as the sidecar exports them, reduced by ``vigil.core.window.series_key``.

    Used to check the fast window arithmetic against the metrics sources' path.
    """
    live, copy = {"endpoint": "infer", "origin": LIVE}, {"endpoint": "infer", "origin": SHADOW}
    ok, failed = {"outcome": SUCCESS}, {"outcome": ERROR}
    samples: list[tuple[str, dict[str, str], float]] = [
        ("vigil_request_outcomes_total", {**live, **ok}, counts[_SUCCESS] - counts[_COPY_SUCCESS]),
        ("vigil_request_outcomes_total", {**live, **failed}, counts[_ERROR] - counts[_COPY_ERROR]),
        ("vigil_request_outcomes_total", {**copy, **ok}, counts[_COPY_SUCCESS]),
        ("vigil_request_outcomes_total", {**copy, **failed}, counts[_COPY_ERROR]),
        ("vigil_input_rows_total", {}, counts[_ROWS]),
        ("vigil_predictions_total", {}, counts[layout.predictions]),
    ]
    everything = np.cumsum(counts[layout.latency])
    copies = np.cumsum(counts[layout.copy_latency])
    samples += [
        (name, {**labels, "le": _le(bound)}, value)
        for i, bound in enumerate(LATENCY_BOUNDS)
        for name, labels, value in (
            ("vigil_request_duration_seconds_bucket", live, everything[i] - copies[i]),
            ("vigil_request_duration_seconds_bucket", copy, copies[i]),
        )
    ]
    bins = counts[layout.feature_bins].reshape(len(layout.features), -1)
    samples += [
        ("vigil_feature_bin_total", {"feature": name, "bin": str(slot)}, bins[f, slot])
        for f, name in enumerate(layout.features)
        for slot in range(layout.feature_slots)
    ]
    family, label = (
        ("vigil_prediction_class_total", "class")
        if layout.classification
        else ("vigil_prediction_bin_total", "bin")
    )
    predictions = counts[layout.prediction]
    samples += [
        (family, {label: value}, predictions[i]) for i, value in enumerate(layout.prediction_labels)
    ]
    if shadow_target:
        target = {"target_revision": shadow_target}
        samples += [
            ("vigil_shadow_predictions_total", target, counts[layout.shadow_predictions]),
            ("vigil_shadow_agreements_total", target, counts[layout.shadow_agreements]),
            ("vigil_shadow_abs_difference_sum", target, counts[layout.shadow_difference_sum]),
            ("vigil_shadow_abs_difference_count", target, counts[layout.shadow_differences]),
        ]
    base = {"model": "sim", "version": "1", "revision": "r", "role": "stable", "pod": "p"}
    out: dict[SeriesKey, float] = {}
    for name, labels, value in samples:
        key = series_key(name, {**base, **labels})
        assert key is not None, name
        out[key] = float(value)
    return out


class Stream:
    """Both revisions' counters, fed by simulated live traffic and scraped per cycle."""

    def __init__(self, world: CaseWorld, rate: float, rng: np.random.Generator) -> None:
        self.world = world
        self.rate = rate
        self.rng = rng
        self.stable_layout = Layout.of(world.stable_reference)
        self.candidate_layout = Layout.of(world.candidate_reference)
        self.stable = np.zeros(self.stable_layout.size)
        self.candidate = np.zeros(self.candidate_layout.size)
        self.scraped_at: list[float] = []
        self.stable_scrapes: list[np.ndarray] = []
        self.candidate_scrapes: list[np.ndarray] = []
        #: Live requests so far, and requests the candidate answered (live and copies).
        self.live_requests = 0
        self.candidate_requests = 0
        self._prediction_stable = world.prediction.stable_marginal()
        self._prediction_candidate = world.prediction.candidate_marginal()
        self._compared: dict[ShadowSettings, CellModel] = {}

    def flow(self, seconds: float, share: float, shadow: ShadowSettings = NO_SHADOW) -> None:
        """``seconds`` of live traffic, ``share`` of it to the candidate; the stable's
        sidecars copy its successful requests to the candidate as ``shadow`` says."""
        rng, world = self.rng, self.world
        copy = shadow.percent / 100.0 if shadow.enabled else 0.0
        n = int(rng.poisson(self.rate * seconds)) if seconds > 0 else 0
        if n == 0:
            return
        to_candidate = int(rng.binomial(n, share)) if share > 0 else 0
        to_stable = n - to_candidate
        stable_errors = int(rng.binomial(to_stable, world.stable_error))
        stable_ok = to_stable - stable_errors
        copies = int(rng.binomial(stable_ok, copy)) if copy > 0 else 0
        copy_errors = int(rng.binomial(copies, world.candidate_error)) if copies else 0
        compared = copies - copy_errors
        live_errors = int(rng.binomial(to_candidate, world.candidate_error)) if to_candidate else 0
        answered = to_candidate + copies
        self.live_requests += n
        self.candidate_requests += answered

        s, c = self.stable, self.candidate
        sl, cl = self.stable_layout, self.candidate_layout
        s[_SUCCESS] += stable_ok
        s[_ERROR] += stable_errors
        s[_ROWS] += to_stable
        s[sl.latency] += rng.multinomial(to_stable, world.stable_latency)
        c[_SUCCESS] += answered - copy_errors - live_errors
        c[_ERROR] += copy_errors + live_errors
        c[_COPY_SUCCESS] += copies - copy_errors
        c[_COPY_ERROR] += copy_errors
        c[_ROWS] += answered
        if to_candidate:
            c[cl.latency] += rng.multinomial(to_candidate, world.candidate_latency)
        if copies:
            copied = rng.multinomial(copies, world.candidate_latency)
            c[cl.latency] += copied
            c[cl.copy_latency] += copied

        # Inputs: copies are the same rows on both sides; the rest is one side's own.
        stable_bins = s[sl.feature_bins].reshape(len(sl.features), -1)
        candidate_bins = c[cl.feature_bins].reshape(len(cl.features), -1)
        if copies:
            cells = rng.multinomial(copies, world.feature_probs)
            stable_bins += np.einsum("fw,fws->fs", cells, world.feature_stable_map)
            candidate_bins += np.einsum("fw,fws->fs", cells, world.feature_candidate_map)
        if to_stable > copies:
            stable_bins += rng.multinomial(to_stable - copies, world.feature_stable_marginal)
        if to_candidate:
            candidate_bins += rng.multinomial(to_candidate, world.feature_candidate_marginal)

        # Predictions of answered requests; compared copies are counted on both sides.
        if compared:
            model = self._compared.get(shadow)
            if model is None:
                model = self._compared[shadow] = world.compared_cells(shadow)
            cells = rng.multinomial(compared, model.probs)
            s[sl.prediction] += np.bincount(model.stable_slot, cells, model.stable_slots)
            c[cl.prediction] += np.bincount(model.candidate_slot, cells, model.candidate_slots)
            s[sl.shadow_predictions] += compared
            s[sl.shadow_agreements] += int(cells[model.agree].sum())
            s[sl.shadow_differences] += compared
            s[sl.shadow_difference_sum] += float(cells @ model.difference)
        if stable_ok > compared:
            s[sl.prediction] += rng.multinomial(stable_ok - compared, self._prediction_stable)
        live_ok = to_candidate - live_errors
        if live_ok:
            c[cl.prediction] += rng.multinomial(live_ok, self._prediction_candidate)
        s[sl.predictions] += stable_ok
        c[cl.predictions] += compared + live_ok

    def scrape(self, at: float) -> None:
        self.scraped_at.append(at)
        self.stable_scrapes.append(self.stable.copy())
        self.candidate_scrapes.append(self.candidate.copy())

    def window(self, window_seconds: float) -> tuple[np.ndarray, np.ndarray]:
        """(stable, candidate) increases over the window ending at the last scrape."""
        if not self.scraped_at:
            raise RuntimeError("no scrape yet")
        return self.since(self.scraped_at[-1] - window_seconds)

    def since(self, start: float) -> tuple[np.ndarray, np.ndarray]:
        """(stable, candidate) increases from the last scrape at or before ``start``."""
        if not self.scraped_at:
            raise RuntimeError("no scrape yet")
        base = max(0, bisect_right(self.scraped_at, start) - 1)
        return (
            self.stable_scrapes[-1] - self.stable_scrapes[base],
            self.candidate_scrapes[-1] - self.candidate_scrapes[base],
        )
