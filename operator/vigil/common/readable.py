"""Figures as a person reads them: ``0.5%``, ``23ms``.

The printer columns of ``kubectl get md`` (``status.health.readable``) and
the model report use these; status keeps the raw numbers for tools.
"""

from __future__ import annotations

import math


def _trim(text: str) -> str:
    """``1.0`` -> ``1``, ``2.50`` -> ``2.5`` (a fixed-point number without trailing zeros)."""
    return text.rstrip("0").rstrip(".") if "." in text else text


def percent(share: float) -> str:
    """A share of 1 in percent: 0 -> ``0%``, 0.005 -> ``0.5%``, 0.00012 -> ``0.012%``."""
    if not math.isfinite(share):
        return "-"
    value = share * 100
    if value == 0:
        return "0%"
    if abs(value) < 0.1:
        return f"{value:.2g}%"
    return f"{_trim(f'{value:.1f}')}%"


def milliseconds(seconds: float, more: int = 0) -> str:
    """``0.25`` -> ``250ms``, ``0.0004`` -> ``0.4ms``: whole milliseconds (``more``: that many
    more decimals), under one from its first significant digit (a 0.5 ms limit read ``0ms``)."""
    millis = seconds * 1000
    if 0 < millis < 1:
        more -= math.floor(math.log10(millis))
    return f"{millis:.{more}f}ms"


#: The units of a duration from a second up, largest first, with their length in seconds.
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def time_unit(seconds: float, *, at_least: float = 1) -> tuple[str, int]:
    """The largest unit (``d``, ``h``, ``m``, ``s``) of which ``seconds`` holds ``at_least``,
    and its length in seconds: 3600 -> (``h``, 3600); with ``at_least=2``, 3600 -> (``m``, 60);
    (``s``, 1) when none does."""
    for unit, length in _UNITS:
        if seconds >= at_least * length:
            return unit, length
    return "s", 1


def duration(seconds: float) -> str:
    """Seconds with a unit: 0.0225 -> ``23ms``, 0.0004 -> ``0.4ms``, 2.5 -> ``2.5s``."""
    if not math.isfinite(seconds):
        return "-"
    if seconds < 0.001:
        return f"{_trim(f'{seconds * 1000:.2f}')}ms"
    if seconds < 1:
        return f"{round(seconds * 1000 + 1e-9):d}ms"
    unit, length = time_unit(seconds)
    if unit == "s":
        return f"{_trim(f'{seconds:.2f}')}s"
    # Label delays run to days.
    return f"{_trim(f'{seconds / length:.1f}')}{unit}"
