"""Figures as a person reads them in `kubectl get md` and the model report."""

from __future__ import annotations

import math

import pytest

from vigil.common.readable import duration, milliseconds, percent
from vigil.core.judges.evidence import ms


@pytest.mark.parametrize(
    ("share", "text"),
    [(0, "0%"), (0.005, "0.5%"), (0.01, "1%"), (0.1234, "12.3%"), (0.00012, "0.012%"), (1, "100%")],
)
def test_shares_read_as_percent_without_trailing_zeros(share: float, text: str) -> None:
    assert percent(share) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0ms"),
        (0.0004, "0.4ms"),
        (0.0225, "23ms"),
        (0.25, "250ms"),
        (2.5, "2.5s"),
        (90, "1.5m"),
        (5400, "1.5h"),
        (3 * 86400, "3d"),
    ],
)
def test_durations_carry_their_unit(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_non_finite_figures_read_as_a_dash() -> None:
    assert percent(math.nan) == "-" and duration(math.inf) == "-"


@pytest.mark.parametrize(
    ("seconds", "more", "text"),
    [(0.25, 0, "250ms"), (0.0005, 0, "0.5ms"), (0.00004, 0, "0.04ms"), (0.25, 1, "250.0ms")],
)
def test_milliseconds_under_one_read_from_their_first_digit(
    seconds: float, more: int, text: str
) -> None:
    # A gate's latencyP95 against a 0.5 ms limit read "p95 0ms [0ms, 1ms] vs 0ms".
    assert milliseconds(seconds, more) == text
    assert ms(seconds) == milliseconds(seconds)
