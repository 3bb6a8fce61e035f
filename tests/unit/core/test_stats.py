"""The gates' arithmetic against SciPy, and the error rates it promises, on simulated streams."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy import integrate, special, stats

from vigil.core.drift import divergence, psi
from vigil.core.stats import (
    BetaBinomial,
    beta_quantile,
    betainc,
    clopper_pearson,
    holm_levels,
    mann_whitney,
    normal_log_mixture,
    normal_p_values,
    normal_radius,
    rank_effect,
    wilson,
)


class TestFixedSampleProportions:
    @pytest.mark.parametrize("a", [0.05, 0.5, 1.0, 3.0, 40.0, 400.0])
    @pytest.mark.parametrize("b", [0.05, 1.0, 7.5, 900.0])
    def test_incomplete_beta(self, a: float, b: float) -> None:
        for x in (1e-6, 0.01, 0.2, 0.5, 0.9, 0.999):
            assert betainc(a, b, x) == pytest.approx(special.betainc(a, b, x), abs=1e-12)

    def test_beta_quantile(self) -> None:
        for a, b, q in ((2, 5, 0.025), (0.5, 50, 0.99), (200, 3, 0.5)):
            assert beta_quantile(q, a, b) == pytest.approx(stats.beta.ppf(q, a, b), abs=1e-10)

    @pytest.mark.parametrize(("hits", "trials"), [(0, 10), (3, 10), (10, 10), (197, 200), (1, 60)])
    @pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
    def test_exact_and_wilson_intervals(self, hits: int, trials: int, confidence: float) -> None:
        result = stats.binomtest(hits, trials)
        exact = result.proportion_ci(confidence, method="exact")
        score = result.proportion_ci(confidence, method="wilson")
        assert clopper_pearson(hits, trials, confidence) == pytest.approx(
            (exact.low, exact.high), abs=1e-9
        )
        assert wilson(hits, trials, confidence) == pytest.approx((score.low, score.high), abs=1e-9)


class TestBetaBinomialSequence:
    def test_the_mixture_is_the_beta_binomial_likelihood_ratio(self) -> None:
        mixture = BetaBinomial(centre=0.05, prior_trials=40)
        for hits, trials, p in ((3, 60, 0.01), (0, 500, 0.02), (30, 100, 0.5)):
            marginal = stats.betabinom.pmf(hits, trials, mixture.a, mixture.b)
            ratio = marginal / stats.binom.pmf(hits, trials, p)
            assert math.exp(mixture.log_mixture(hits, trials, p)) == pytest.approx(ratio, rel=1e-9)

    def test_bounds_hold_the_estimate_and_exclude_what_the_evidence_rejects(self) -> None:
        mixture = BetaBinomial(centre=0.01, prior_trials=50)
        bounds = mixture.bounds(12, 200, alpha=0.01, threshold=0.01)
        assert bounds.low < 12 / 200 < bounds.high
        assert bounds.low > 0.01 and bounds.p_above < 0.01 and bounds.p_below == 1.0
        for p, above in ((bounds.low, True), (bounds.high, False)):
            evidence = mixture.log_one_sided(12, 200, p, above=above)
            assert evidence == pytest.approx(math.log(100), abs=1e-6)

    @pytest.mark.parametrize(
        ("hits", "trials", "p", "above"),
        [(12, 200, 0.01, True), (0, 500, 0.01, False), (3, 60, 0.02, True), (52, 1000, 0.01, True)],
    )
    def test_one_sided_evidence_is_the_truncated_prior_mixture(
        self, hits: int, trials: int, p: float, above: bool
    ) -> None:
        mixture = BetaBinomial(centre=0.01, prior_trials=30)
        a, b = mixture.a, mixture.b

        def ratio(q: float) -> float:
            lr = hits * math.log(q / p) + (trials - hits) * math.log((1 - q) / (1 - p))
            return float(stats.beta.pdf(q, a, b)) * math.exp(lr)

        low, high = (p, 1.0) if above else (0.0, p)
        inside = [hits / trials] if low < hits / trials < high else None
        mixed, _ = integrate.quad(ratio, low, high, limit=500, points=inside)
        mass = stats.beta.sf(p, a, b) if above else stats.beta.cdf(p, a, b)
        found = mixture.log_one_sided(hits, trials, p, above=above)
        assert found == pytest.approx(math.log(mixed / mass), abs=1e-6)

    def test_one_sided_evidence_needs_fewer_samples_than_the_whole_mixture(self) -> None:
        # 5.2 % errors against a 1 % limit, at one gate's share of the default budget.
        mixture, level = BetaBinomial(centre=0.01, prior_trials=30), math.log(1 / 0.002)

        def first(evidence: Callable[[float, float], float]) -> int:
            return next(n for n in range(10, 1000) if evidence(0.052 * n, n) >= level)

        one = first(lambda h, n: mixture.log_one_sided(h, n, 0.01, above=True))
        both = first(lambda h, n: mixture.log_mixture(h, n, 0.01))
        assert one < 0.9 * both

    @pytest.mark.slow
    @pytest.mark.parametrize(("p", "above"), [(0.002, True), (0.01, True), (0.01, False)])
    def test_a_true_rate_is_rejected_one_sided_at_any_look_at_most_alpha(
        self, p: float, above: bool
    ) -> None:
        # The one-sided evidence at the true rate is a supermartingale: anytime coverage.
        alpha, rng = 0.05, np.random.default_rng(9)
        mixture = BetaBinomial(centre=0.01, prior_trials=30)
        level = math.log(1 / alpha)
        looks = np.arange(25, 2001, 25)
        hits = np.cumsum(rng.random((1000, 2000)) < p, axis=1)[:, looks - 1].tolist()
        left = sum(
            any(
                mixture.log_one_sided(h, n, p, above=above) >= level
                for h, n in zip(row, looks.tolist(), strict=True)
            )
            for row in hits
        )
        assert left / 1000 <= alpha

    @pytest.mark.parametrize("p", [0.002, 0.01, 0.2])
    def test_a_true_rate_leaves_the_sequence_at_any_look_at_most_alpha(self, p: float) -> None:
        # 1 000 streams of 2 000 requests each, looked at after every 25: anytime coverage.
        alpha, rng = 0.05, np.random.default_rng(7)
        mixture = BetaBinomial(centre=0.01, prior_trials=50)
        level = math.log(1 / alpha)
        looks = np.arange(25, 2001, 25)
        # Plain ints: NumPy scalars would make each of the 80 000 looks several times slower.
        hits = np.cumsum(rng.random((1000, 2000)) < p, axis=1)[:, looks - 1].tolist()
        left = 0
        for row in hits:
            left += any(
                mixture.log_mixture(h, n, p) >= level
                for h, n in zip(row, looks.tolist(), strict=True)
            )
        assert left / 1000 <= alpha


class TestNormalMixture:
    def test_radius_inverts_the_mixture(self) -> None:
        for variance, mixing in ((0.01, 0.01), (1e-4, 0.04), (2.0, 0.5)):
            r = normal_radius(variance, mixing, 0.01)
            assert normal_log_mixture(r, variance, mixing) == pytest.approx(math.log(100))

    def test_p_values_point_one_way(self) -> None:
        above, below = normal_p_values(0.3, 0.2, 0.0004, 0.01)
        assert above < 0.01 and below == 1.0

    @pytest.mark.slow
    def test_a_random_walk_leaves_the_sequence_at_most_alpha(self) -> None:
        alpha, rng, mixing = 0.05, np.random.default_rng(3), 0.05
        n = np.arange(1, 3001)
        means = np.cumsum(rng.normal(size=(2000, 3000)), axis=1) / n
        radius = np.asarray([normal_radius(1 / k, mixing, alpha) for k in n])
        left = np.mean(np.any(np.abs(means) > radius, axis=1))
        assert left <= alpha


class TestHolm:
    def test_against_adjusted_p_values(self) -> None:
        rng = np.random.default_rng(11)
        for _ in range(200):
            p = rng.uniform(0, 0.05, size=6) ** rng.uniform(0.5, 2)
            names = [f"g{i}" for i in range(6)]
            order = np.argsort(p)
            adjusted = np.maximum.accumulate((6 - np.arange(6)) * p[order])
            expected = {names[i] for i, a in zip(order, adjusted, strict=True) if a <= 0.01}
            assert set(holm_levels(dict(zip(names, p, strict=True)), 0.01)) == expected

    def test_nothing_to_test(self) -> None:
        assert set(holm_levels({}, 0.05)) == set()


def _expand(counts: list[int], values: np.ndarray) -> np.ndarray:
    return np.repeat(values, counts)


class TestRankEffect:
    def test_u_and_p_value_match_scipy_with_ties(self) -> None:
        rng = np.random.default_rng(5)
        values = np.arange(12.0)
        for _ in range(30):
            candidate = rng.multinomial(rng.integers(5, 300), np.full(12, 1 / 12)).tolist()
            stable = rng.multinomial(rng.integers(5, 300), rng.dirichlet(np.ones(12))).tolist()
            x, y = _expand(candidate, values), _expand(stable, values)
            expected = stats.mannwhitneyu(x, y, method="asymptotic", use_continuity=True)
            u, p = mann_whitney(candidate, stable)
            assert u == pytest.approx(expected.statistic)
            assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-12)

    def test_theta_is_the_share_of_pairs_where_the_candidate_is_slower(self) -> None:
        effect = rank_effect([0, 1, 1], [1, 1, 0])
        # pairs (c, s): (1,0) >, (1,1) =, (2,0) >, (2,1) >: (3 + 0.5) / 4
        assert effect is not None and effect.theta == pytest.approx(3.5 / 4)

    @pytest.mark.slow
    def test_delong_variance_matches_the_spread_of_theta(self) -> None:
        rng = np.random.default_rng(9)
        probs_s = np.full(20, 0.05)
        probs_c = np.linspace(0.5, 1.5, 20) / np.linspace(0.5, 1.5, 20).sum()
        thetas, variances = [], []
        for _ in range(2000):
            effect = rank_effect(rng.multinomial(200, probs_c), rng.multinomial(300, probs_s))
            assert effect is not None
            thetas.append(effect.theta)
            variances.append(effect.variance)
        assert np.mean(variances) == pytest.approx(np.var(thetas), rel=0.1)

    def test_empty_sides(self) -> None:
        assert rank_effect([0, 0], [1, 2]) is None


class TestDivergence:
    def test_raw_is_the_methods_score(self) -> None:
        ref, cur = np.array([0.2, 0.3, 0.5]), np.array([30.0, 20, 50])
        found = divergence("psi", ref, cur, reference_rows=math.inf)
        assert found is not None and found.raw == pytest.approx(psi(ref, cur))

    def test_rows_times_psi_is_the_chi_square_statistic(self) -> None:
        rng = np.random.default_rng(2)
        probs = np.full(10, 0.1)
        for _ in range(20):
            a, b = rng.multinomial(2000, probs), rng.multinomial(3000, probs * 1.0)
            chi2 = stats.chi2_contingency(np.vstack([a, b]), correction=False).statistic
            found = divergence("psi", a, b)
            assert found is not None
            assert found.rows * found.raw == pytest.approx(chi2, rel=0.05, abs=0.5)

    @pytest.mark.parametrize("method", ["psi", "jsd"])
    @pytest.mark.parametrize("rows", [60, 300, 3000])
    def test_the_correction_removes_the_small_sample_bias(self, method: str, rows: int) -> None:
        # The reference profile is a sample too (5 000 training rows).
        rng, probs = np.random.default_rng(4), np.full(10, 0.1)
        corrected = [
            divergence(
                method,
                rng.multinomial(5000, probs) / 5000,
                rng.multinomial(rows, probs),
                reference_rows=5000,
            ).corrected
            for _ in range(3000)
        ]
        scale = 8 * math.log(2) if method == "jsd" else 1.0
        bias = 9 / (scale * rows * 5000 / (rows + 5000))  # what the raw score carries
        assert abs(np.mean(corrected)) < 0.15 * bias

    @pytest.mark.slow
    def test_an_identical_stream_fails_a_threshold_at_most_alpha_at_any_look(self) -> None:
        # The prediction-shift gate's situation: two revisions, one distribution.
        alpha, rng, probs = 0.05, np.random.default_rng(8), np.full(12, 1 / 12)
        failed = 0
        for _ in range(400):
            a = np.cumsum(rng.multinomial(10, probs, size=60), axis=0)
            b = np.cumsum(rng.multinomial(10, probs, size=60), axis=0)
            for x, y in zip(a, b, strict=True):
                found = divergence("psi", x, y)
                # The test of the threshold alone: the interval is not looked at.
                if found is not None and found.bounds(alpha, 0.05, interval=False).p_above <= alpha:
                    failed += 1
                    break
        assert failed / 400 <= alpha

    def test_a_true_divergence_stays_inside_its_sequence(self) -> None:
        rng = np.random.default_rng(6)
        ref, live = np.full(10, 0.1), np.array([0.05] * 5 + [0.15] * 5)
        truth = psi(ref, live)
        inside = 0
        for _ in range(500):
            found = divergence("psi", ref, rng.multinomial(400, live), reference_rows=math.inf)
            assert found is not None
            bounds = found.bounds(0.05, 0.2)
            inside += bounds.low <= truth <= bounds.high
        assert inside / 500 >= 0.95

    def test_too_few_rows_per_slot_are_not_judged(self) -> None:
        assert divergence("psi", np.full(10, 0.1), np.full(10, 4.0), reference_rows=100) is None

    def test_methods_without_a_chi_square_form(self) -> None:
        assert divergence("ks", [1.0, 2.0], [2.0, 1.0]) is None
