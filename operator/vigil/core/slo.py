"""The SLOs of ``spec.monitoring.slo`` judged on intervals, and their figures in words.

An error rate of 1 in 60 requests is no evidence that the model fails more than
1 % of requests: each SLO is judged on a Wilson interval at
:data:`SLO_CONFIDENCE`, the error rate directly and the p95 latency as the share of
requests slower than its limit (p95 over the limit = more than 5 % slower). Surely
over its limit, the SLO is breached; surely within, met; in between, undecided:
the verdict keeps what it was (a breached SLO stays breached until surely met).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal

from vigil.common.readable import milliseconds
from vigil.core.spec import HealthPolicy
from vigil.core.stats import wilson
from vigil.core.vocabulary import Reason
from vigil.core.window import RevisionWindow, quantile_from_buckets

#: Two-sided confidence of the intervals an SLO breach is judged on (Wilson, on the
#: error rate and on the share of requests slower than the p95 limit).
SLO_CONFIDENCE = 0.99
#: p95 over a limit = more than this share of requests slower than it.
P95_SHARE = 0.05
#: Fewer failed (or slow) requests than this are none: Prometheus' increase() and the
#: interpolation in a histogram bucket leave fractions where nothing failed.
HALF_A_REQUEST = 0.5


def format_percent(value: float, more: int = 0) -> str:
    """0.032 -> '3.2%' (``more``: that many more decimals)."""
    decimals = (1 if value >= 0.001 or value == 0 else 2) + more
    return f"{value * 100:.{decimals}f}%"


def format_seconds(value: float, more: int = 0) -> str:
    """0.25 -> '250ms', 0.0004 -> '0.4ms', 12.5 -> '12.5s' (``more``: that many more
    decimals; under a millisecond, from the first significant digit: a 0.5ms limit read
    "0ms")."""
    return milliseconds(value, more) if value < 10 else f"{value:.{1 + more}f}s"


def error_rate_of(window: RevisionWindow) -> float | None:
    total = window.requests
    if total <= 0:
        return None
    errors = total - window.requests_by_outcome.get("success", 0.0)
    return max(0.0, errors) / total


SloState = Literal["over", "within", "undecided"]


@dataclass(frozen=True)
class SloJudgement:
    """One SLO judged on an interval: surely over its limit, surely within, or undecided."""

    reason: str
    figure: str  # "error rate 3.2%", "p95 420ms"
    limit: str  # "1.0%", "250ms"
    state: SloState
    #: The interval the state was judged on, in words.
    interval: str
    #: The window holds a failure (a failed request; a request slower than the limit).
    failed_any: bool = True
    #: A window of this many requests could be surely within (one without a failure: not
    #: under about 660 requests for a 1 % limit, never for a limit of 0).
    can_clear: bool = True

    def breached(self, degraded_by: Collection[str]) -> bool:
        """Surely over; or undecided while the last verdict found this SLO breached (one
        of ``degraded_by``), until surely within, or, where no window of this size could
        be, a window without a failure (the best it can show; the estimate alone would
        flap at the limit)."""
        if self.state == "over":
            return True
        held = self.state == "undecided" and self.reason in degraded_by
        return held and (self.can_clear or self.failed_any)

    def said(self, span: str = "") -> str:
        """'error rate 3.2% > 1.0% over 5m, 99% interval 2.0%-5.0%', and the like."""
        over = f" over {span}" if span else ""
        if self.state == "within":
            return f"{self.figure} <= {self.limit}{over}"
        if self.state == "over":
            return f"{self.figure} > {self.limit}{over}, {self.interval}"
        side = "within" if span else "over"
        return f"{self.figure} not surely {side} {self.limit}{over}, {self.interval}"


def judge_slos(window: RevisionWindow, policy: HealthPolicy) -> list[SloJudgement]:
    """The error rate and the p95 latency against their limits, each on a Wilson interval at
    :data:`SLO_CONFIDENCE` (p95: of the share of requests slower than its limit)."""
    judged = []
    requests = window.requests
    error_rate = error_rate_of(window)
    if error_rate is not None:
        low, high = wilson(error_rate * requests, requests, SLO_CONFIDENCE)
        limit = policy.max_error_rate
        shown, limit_shown = distinct(format_percent, error_rate, limit)
        judged.append(
            SloJudgement(
                Reason.ERROR_RATE_HIGH,
                f"error rate {shown}",
                limit_shown,
                _state(low, high, limit),
                f"{_level()} interval {interval_text(format_percent, low, high, limit)}",
                failed_any=error_rate * requests >= HALF_A_REQUEST,
                can_clear=_can_clear(requests, limit),
            )
        )
    p95 = quantile_from_buckets(0.95, window.latency_buckets)
    if p95 is None:
        return judged
    shown, limit_shown = distinct(format_seconds, p95, policy.max_latency_p95)
    slow = _share_slower(window.latency_buckets, policy.max_latency_p95)
    if slow is None:  # the limit past the highest bucket: no p95 reads over it
        judged.append(SloJudgement(Reason.LATENCY_HIGH, f"p95 {shown}", limit_shown, "within", ""))
        return judged
    slower, total = slow
    low, high = wilson(slower, total, SLO_CONFIDENCE)
    state = _state(low, high, P95_SHARE)
    judged.append(
        SloJudgement(
            Reason.LATENCY_HIGH,
            f"p95 latency {shown}" if state == "over" else f"p95 {shown}",
            limit_shown,
            state,
            f"{format_percent(slower / total)} of requests slower than {limit_shown}, "
            f"{_level()} interval {interval_text(format_percent, low, high, P95_SHARE)}",
            failed_any=slower >= HALF_A_REQUEST,
            can_clear=_can_clear(total, P95_SHARE),
        )
    )
    return judged


def _can_clear(trials: float, limit: float) -> bool:
    """Whether a window of ``trials`` with no failure at all lies surely within ``limit``."""
    return wilson(0.0, trials, SLO_CONFIDENCE)[1] <= limit


def _state(low: float, high: float, limit: float) -> SloState:
    return "over" if low > limit else "within" if high <= limit else "undecided"


def _level() -> str:
    return f"{SLO_CONFIDENCE:.0%}"


def interval_text(fmt: Callable[[float, int], str], low: float, high: float, limit: float) -> str:
    """'2.0%-5.0%'; an interval wholly on one side of the limit gets more decimals while an
    end reads as the limit (one surely over 1.0% printed from "1.0%")."""
    if low <= limit <= high:
        return f"{fmt(low, 0)}-{fmt(high, 0)}"
    for more in range(4):
        ends = (fmt(low, more), fmt(high, more))
        if all(
            end != fmt(limit, more) or value == limit
            for end, value in zip(ends, (low, high), strict=True)
        ):
            break
    return f"{ends[0]}-{ends[1]}"


def distinct(fmt: Callable[[float, int], str], value: float, limit: float) -> tuple[str, str]:
    """``value`` and ``limit`` formatted, with more decimals while they read alike (1 error
    in 99 requests over a 1 % limit reads "1.01% > 1.00%", not "1.0% > 1.0%")."""
    for more in range(4):
        shown, limit_shown = fmt(value, more), fmt(limit, more)
        if shown != limit_shown or value == limit:
            break
    return shown, limit_shown


def _share_slower(
    buckets: tuple[tuple[float, float], ...], limit: float
) -> tuple[float, float] | None:
    """(requests slower than ``limit``, requests) from cumulative histogram buckets, counted
    as ``histogram_quantile`` interpolates; None without requests, or when ``limit`` lies
    past the highest finite bucket (no p95 reads over it there)."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if math.isinf(bound):
            return None
        if limit <= bound:
            share = (limit - lower_bound) / (bound - lower_bound) if bound > lower_bound else 1.0
            within = lower_count + (count - lower_count) * share
            return max(0.0, total - within), total
        lower_bound, lower_count = bound, count
    return None
