"""Figures as a person reads them in `kubectl get md` and the model report."""

from __future__ import annotations

import math

import pytest

from vigil.common.readable import duration, percent


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
