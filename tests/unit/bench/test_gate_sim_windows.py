"""The gate simulator's windows: counted as the sidecars and the direct source count them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gatesim.counters import ERROR, NO_SHADOW, SUCCESS, Stream, WindowView, sidecar_series
from gatesim.world import CASES, Baseline, build_world, class_cells, numeric_cells
from scipy.special import ndtr

from vigil.core.health import feature_drift
from vigil.core.window import RevisionWindow, Scrape, add_series, pod_increase
from vigil.core.window import quantile_from_buckets as quantile
from vigil.sidecar.config import ShadowSettings
from vigil.sidecar.shadow import default_absolute_tolerance

CASE = {c.name: c for c in CASES}
BASE = Baseline()
#: The stable's sidecars copy every successful request (tolerance: the sidecar's defaults).
ALL = ShadowSettings(target="http://c", target_revision="cand", percent=100)


def stream(case: str, rate: float, seed: int = 7) -> Stream:
    return Stream(build_world(CASE[case], BASE), rate, np.random.default_rng(seed))


def window(s: Stream, counts: np.ndarray, stable: bool) -> RevisionWindow:
    layout = s.stable_layout if stable else s.candidate_layout
    return WindowView(layout, counts, "cand" if stable else "", 1).full


def within(value: float, expected: float, sd: float, k: float = 4.0) -> bool:
    return abs(value - expected) <= k * sd


class TestLiveTraffic:
    def test_a_stream_at_rate_r_brings_r_requests_per_second(self) -> None:
        s = stream("A/A", rate=10)
        for _ in range(100):
            s.flow(10.0, share=0.0)
        assert within(s.live_requests, 10_000, math.sqrt(10_000))
        assert s.candidate_requests == 0

    def test_every_request_is_counted_once_in_each_family(self) -> None:
        s = stream("A/A", rate=10)
        s.flow(600.0, share=0.0)
        w = window(s, s.stable, stable=True)
        assert w.requests == s.live_requests == w.input_rows
        assert w.latency_buckets[-1] == (math.inf, w.requests)
        for bins in w.feature_bins.values():
            assert sum(bins.values()) == w.input_rows
        assert sum(w.prediction_classes.values()) == w.requests_by_outcome[SUCCESS]

    def test_a_canary_share_splits_live_requests(self) -> None:
        s = stream("A/A", rate=10)
        s.flow(1000.0, share=0.5)
        candidate = window(s, s.candidate, stable=False)
        stable = window(s, s.stable, stable=True)
        assert candidate.requests + stable.requests == s.live_requests
        assert within(candidate.requests, s.live_requests / 2, math.sqrt(s.live_requests) / 2)

    def test_the_error_rates_are_the_cases(self) -> None:
        s = stream("error +5 pt", rate=100)
        s.flow(1000.0, share=0.5)
        for counts, p in ((s.stable, BASE.error_rate), (s.candidate, BASE.error_rate + 0.05)):
            n = counts[0] + counts[1]
            assert within(counts[1] / n, p, math.sqrt(p * (1 - p) / n))

    def test_a_long_window_gives_the_baseline_p95(self) -> None:
        s = stream("p95 +50%", rate=100)
        s.flow(1000.0, share=0.5)
        stable = quantile(0.95, window(s, s.stable, stable=True).latency_buckets)
        candidate = quantile(0.95, window(s, s.candidate, stable=False).latency_buckets)
        # Interpolating inside a bucket (as Prometheus does) reads 188 ms for 180 ms.
        assert stable == pytest.approx(BASE.latency_p95, rel=0.05)
        assert candidate == pytest.approx(BASE.latency_p95 * 1.5, rel=0.05)


class TestShadowCopies:
    def test_the_candidate_answers_the_stable_s_successful_requests(self) -> None:
        s = stream("A/A", rate=10)
        s.flow(600.0, share=0.0, shadow=ALL)
        stable, candidate = window(s, s.stable, True), window(s, s.candidate, False)
        assert candidate.requests == stable.requests_by_outcome[SUCCESS]
        answered = candidate.requests_by_outcome[SUCCESS]
        assert stable.shadow_predictions == {"cand": answered}
        assert stable.shadow_agreements == {"cand": answered}  # an identical candidate
        # Same rows, same bins: the candidate's inputs are the stable's minus its failures.
        for name, bins in candidate.feature_bins.items():
            assert all(bins[k] <= stable.feature_bins[name][k] for k in bins)
            missing = sum(stable.feature_bins[name].values()) - sum(bins.values())
            assert missing == stable.requests_by_outcome[ERROR]

    def test_agreement_is_the_cases_share_and_leaves_class_shares_alone(self) -> None:
        s = stream("agreement 0.85", rate=100)
        s.flow(1000.0, share=0.0, shadow=ALL)
        stable, candidate = window(s, s.stable, True), window(s, s.candidate, False)
        n = stable.shadow_predictions["cand"]
        assert within(stable.shadow_agreements["cand"] / n, 0.85, math.sqrt(0.85 * 0.15 / n))
        for label in ("0", "1", "2"):
            share = candidate.prediction_classes[label] / n
            assert within(share, 1 / 3, math.sqrt(2 / 9 / n))

    @pytest.mark.parametrize("shift", [0.0, 0.1, 0.25])
    def test_a_shifted_regressor_agrees_where_the_relative_tolerance_covers_it(self, shift):
        s = stream({0.0: "A/A regressor", 0.1: "shift 0.1 sd", 0.25: "shift 0.25 sd"}[shift], 100)
        s.flow(1000.0, share=0.0, shadow=ALL)
        stable = window(s, s.stable, True)
        n = stable.shadow_predictions["cand"]
        prediction = s.world.stable_reference.prediction
        absolute = default_absolute_tolerance(prediction.summary.std)
        # |shift| <= absolute + 5 % x |y| with y ~ N(0, 1): agreement = P(|y| >= turn).
        turn = max(0.0, (shift - absolute) / ALL.relative_tolerance)
        expected = 2 * (1 - ndtr(turn)) if shift else 1.0
        assert within(stable.shadow_agreements["cand"] / n, expected, math.sqrt(0.25 / n))
        assert stable.mean_abs_difference("cand") == pytest.approx(shift)


class TestInputDrift:
    def test_drift_shows_only_against_the_candidate_s_shifted_reference(self) -> None:
        s = stream("drift 3 features", rate=100)
        s.flow(300.0, share=0.0, shadow=ALL)
        world = s.world
        candidate = feature_drift(world.candidate_reference, window(s, s.candidate, False), "psi")
        stable = feature_drift(world.stable_reference, window(s, s.stable, True), "psi")
        # PSI of N(0, 1) against N(0.5, 1) in deciles is about 0.25.
        assert all(candidate[f] > 0.15 for f in ("f0", "f1", "f2"))
        assert all(candidate[f] < 0.02 for f in candidate if f not in ("f0", "f1", "f2"))
        assert max(stable.values()) < 0.02


class TestCellModels:
    def test_numeric_cells_give_the_normal_mass_of_each_slot(self) -> None:
        edges = np.array([-1.5, -0.5, 0.0, 0.7, 2.0])
        expected = np.diff(ndtr(np.concatenate([[-np.inf], edges, [np.inf]])))
        model = numeric_cells(edges, edges)
        assert np.allclose(model.stable_marginal(), expected)
        assert np.array_equal(model.stable_slot, model.candidate_slot)
        shifted = numeric_cells(edges, edges, shift=0.25)
        moved = np.diff(ndtr(np.concatenate([[-np.inf], edges - 0.25, [np.inf]])))
        assert np.allclose(shifted.candidate_marginal(), moved)
        assert not shifted.agree.any()

    def test_class_cells_agree_on_the_diagonal(self) -> None:
        model = class_cells(("0", "2", "1", "__other__"), classes=3, agreement=0.9)
        assert model.probs[model.agree].sum() == pytest.approx(0.9)
        assert np.allclose(model.candidate_marginal()[:3], 1 / 3)


class TestWindowsAsTheDirectSourceComputesThem:
    @pytest.mark.slow
    @pytest.mark.parametrize("case", ["A/A", "drift 1 feature", "shift 0.25 sd"])
    def test_the_fast_window_equals_pod_increase_over_real_series(self, case: str) -> None:
        s = stream(case, rate=10)
        layout_s, layout_c = s.stable_layout, s.candidate_layout
        stable_scrapes: list[Scrape] = []
        candidate_scrapes: list[Scrape] = []
        # Shadow, then canary, with the reconciler's irregular cycles (10 s, 1 s after events).
        times = [0.0, 1.0, *np.arange(11.0, 301.0, 10.0), 302.0, *np.arange(312.0, 700.0, 10.0)]
        last = 0.0
        for at in times:
            shadow = ALL if at <= 320 else NO_SHADOW
            s.flow(at - last, share=0.5 if at > 301 else 0.0, shadow=shadow)
            last = at
            s.scrape(at)
            stable_scrapes.append(Scrape(at, -1000.0, sidecar_series(layout_s, s.stable, "cand")))
            candidate_scrapes.append(Scrape(at, 0.0, sidecar_series(layout_c, s.candidate, "")))
            if at == 0.0:
                continue  # one scrape: no increase yet ({} there, zeros here: the same figures)
            fast_stable, fast_candidate = s.window(300.0)
            for fast, layout, scrapes, target in (
                (fast_stable, layout_s, stable_scrapes, "cand"),
                (fast_candidate, layout_c, candidate_scrapes, ""),
            ):
                series = add_series([pod_increase(scrapes, at - 300.0)])
                assert WindowView(layout, fast, target, 1).full == RevisionWindow.from_series(
                    series, pods=1
                )

    def test_the_window_grows_from_the_first_scrape_then_slides(self) -> None:
        s = stream("A/A", rate=10)
        for at in np.arange(0.0, 1000.0, 10.0):
            s.flow(10.0 if at else 0.0, share=0.0)
            s.scrape(float(at))
        stable, _ = s.window(300.0)
        last, base = s.stable_scrapes[-1], s.stable_scrapes[-31]  # the scrape at 990 - 300
        assert np.array_equal(stable, last - base)
        early = stream("A/A", rate=10)
        early.scrape(0.0)
        early.flow(120.0, share=0.0)
        early.scrape(120.0)
        assert early.window(300.0)[0][0] + early.window(300.0)[0][1] == early.live_requests
