"""The MAE gates on a few labels (vigil.core.judges.performance).

The sample variance of a handful of absolute errors can be 0 (one label,
or labels that happen to agree): taken as it is, one label decided the
gate with certainty. The spread is shrunk towards the limit's square with
the weight of a few labels, fixed before any label arrives, so that a
candidate whose true MAE is at (or within) the limit fails a check at any
label count at most at the gate's level. Checked on simulated streams of
errors against scipy's binomial bound.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import pytest
from figures_kit import figures, scored
from scipy import stats

from vigil.core.judges import gates, step_alpha
from vigil.core.judges.performance import performance_vs_stable, realized_performance
from vigil.core.spec import parse_policy
from vigil.core.vocabulary import GateVerdict
from vigil.core.window import RealizedPerformance


def policy(**performance: object):
    steps = {"steps": [{"canary": {"weight": 50, "duration": "2m"}}]}
    return parse_policy({"tweak": steps, "analysis": {"performance": performance}}, "tweak")


ONE_LABEL = policy(maxMAE=1.0, maxDrop=0.05, minLabels=1)
CANARY = ONE_LABEL.steps[0]


def gate(
    name: str,
    candidate: RealizedPerformance,
    stable: RealizedPerformance | None = None,
    settings=ONE_LABEL,
):
    evidence = replace(figures(requests=500), realized=candidate)
    if stable is not None:
        evidence = replace(evidence, stable_realized=stable)
    return next(g for g in gates(CANARY, settings, evidence) if g.name == name)


@pytest.mark.parametrize(("labels", "mae"), [(1, 1.5), (1, 0.5), (3, 1.2), (2, 1.5)])
def test_a_few_labels_that_agree_decide_nothing_with_certainty(labels: int, mae: float) -> None:
    found = gate("realizedPerformance", scored(labels, mae, 0.0))
    assert found.verdict == GateVerdict.UNDECIDED, found.text
    assert found.low is not None and found.high is not None
    assert found.low < 1.0 < found.high


def test_the_comparison_with_the_stable_on_one_label_each_is_not_certain() -> None:
    for mine, theirs in [(1.5, 1.0), (1.0, 1.5)]:
        found = gate("performanceVsStable", scored(1, mine, 0.0), scored(1, theirs, 0.0))
        assert found.verdict == GateVerdict.UNDECIDED, found.text


def test_many_labels_still_decide_as_their_spread_says() -> None:
    assert gate("realizedPerformance", scored(2000, 1.2, 0.5)).verdict == GateVerdict.FAIL
    assert gate("realizedPerformance", scored(2000, 0.8, 0.5)).verdict == GateVerdict.PASS


def errors_of(errors: np.ndarray) -> RealizedPerformance:
    return RealizedPerformance(
        labels_by_outcome={"joined": float(len(errors))},
        scored_by_class={"": float(len(errors))},
        absolute_error_sum=float(np.abs(errors).sum()),
        squared_error_sum=float((errors**2).sum()),
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "draw",
    [
        # Half of the labels right, half 2 off: the spread the prior guesses least well.
        lambda rng, size: rng.choice([0.0, 2.0], size),
        lambda rng, size: rng.exponential(1.0, size),
        lambda rng, size: np.abs(rng.normal(0.0, 1.0, size)) / np.sqrt(2 / np.pi),
    ],
    ids=["two-point", "exponential", "half-normal"],
)
def test_a_candidate_at_the_limit_fails_a_check_at_most_at_the_gates_level(draw) -> None:
    """minLabels 1, looked at after every label: at each label count the share of streams
    failing stays within the gate's level (its share of the step's budget), as does the
    share failing at any of those looks."""
    settings = policy(maxMAE=1.0, minLabels=1)
    rng = np.random.default_rng(8)
    streams, looks = 5000, 12
    errors = draw(rng, (streams, looks))
    level = step_alpha(settings) / 5  # five gates in the canary's family

    @functools.cache
    def fails(absolute: float, squared: float, n: int) -> bool:
        labels = RealizedPerformance(
            labels_by_outcome={"joined": float(n)},
            scored_by_class={"": float(n)},
            absolute_error_sum=absolute,
            squared_error_sum=squared,
        )
        # The gate's own test at its level: Holm's first step, where a lone failure fails.
        test = realized_performance(labels, settings.performance)
        return test is not None and test.p_fail(test.bounds(level, False)) <= level

    bound = stats.binom.ppf(0.999, streams, level)
    ever = np.zeros(streams, dtype=bool)
    for n in range(1, looks + 1):
        seen = errors[:, :n]
        failed = np.array(
            [
                fails(round(float(a), 9), round(float(s), 9), n)
                for a, s in zip(seen.sum(axis=1), (seen**2).sum(axis=1), strict=True)
            ]
        )
        assert failed.sum() <= bound, (n, failed.sum(), streams, level)
        ever |= failed
    assert ever.sum() <= bound, (ever.sum(), streams, level)


@pytest.mark.slow
def test_a_candidate_at_the_stables_margin_fails_a_check_at_most_at_the_gates_level() -> None:
    """Half of each revision's labels right, half off (the candidate 5 % further): a stable
    whose first labels happen to be right read an MAE of 0 and, with it, no spread."""
    settings = policy(maxDrop=0.05, minLabels=1)
    rng = np.random.default_rng(9)
    streams, looks = 3000, 8
    mine = rng.choice([0.0, 2.1], (streams, looks))
    theirs = rng.choice([0.0, 2.0], (streams, looks))
    level = step_alpha(settings) / 5
    bound = stats.binom.ppf(0.999, streams, level)
    ever = np.zeros(streams, dtype=bool)
    for n in range(1, looks + 1):
        failed = np.array(
            [
                (lambda t: t is not None and t.p_fail(t.bounds(level, False)) <= level)(
                    performance_vs_stable(
                        errors_of(mine[i, :n]), errors_of(theirs[i, :n]), settings.performance
                    )
                )
                for i in range(streams)
            ]
        )
        assert failed.sum() <= bound, (n, failed.sum(), streams, level)
        ever |= failed
    assert ever.sum() <= bound, (ever.sum(), streams, level)
