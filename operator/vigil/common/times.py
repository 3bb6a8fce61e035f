"""Times as Kubernetes writes them: RFC 3339 in UTC, ``Z`` suffix.

``metav1.Time`` (conditions, status times) has second precision,
``metav1.MicroTime`` (an Event's ``eventTime``) microseconds. Every time
Vigil writes or reads in an object goes through these functions.
"""

from __future__ import annotations

import datetime
from typing import Any


def utc_now() -> datetime.datetime:
    """Now, aware, in UTC: the clock the operator stamps status and Events with."""
    return datetime.datetime.now(datetime.UTC)


def format_time(moment: datetime.datetime) -> str:
    """``2026-11-26T12:00:00Z``: second precision (``metav1.Time``)."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(moment: datetime.datetime) -> str:
    """``2026-11-26T12:00:00.123456Z``: microsecond precision (``metav1.MicroTime``)."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_unix(seconds: float | None, *, micro: bool = False) -> str | None:
    """Unix seconds as :func:`format_time` (or, ``micro``, :func:`format_micro_time`)
    writes them; None stays None."""
    if seconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return format_micro_time(moment) if micro else format_time(moment)


def parse_time(value: Any) -> datetime.datetime | None:
    """An RFC 3339 time (``Z`` or an offset); None when absent or unreadable."""
    if not value or not isinstance(value, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    # A time without an offset is taken as UTC, as the API server writes them all.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def parse_unix(value: Any) -> float | None:
    """An RFC 3339 time as Unix seconds; None when absent or unreadable."""
    moment = parse_time(value)
    return None if moment is None else moment.timestamp()
