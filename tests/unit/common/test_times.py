"""RFC 3339 times as Kubernetes writes and reads them (vigil.common.times)."""

from __future__ import annotations

import datetime

from vigil.common.times import format_micro_time, format_time, format_unix, parse_time, parse_unix

MOMENT = datetime.datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=datetime.UTC)


def test_times_are_written_in_utc_with_a_z() -> None:
    paris = MOMENT.astimezone(datetime.timezone(datetime.timedelta(hours=1)))
    assert format_time(paris) == "2026-11-26T12:00:00Z"
    assert format_micro_time(paris) == "2026-11-26T12:00:00.123456Z"
    assert format_unix(MOMENT.timestamp()) == "2026-11-26T12:00:00Z"
    assert format_unix(None) is None


def test_written_times_read_back() -> None:
    assert parse_time(format_time(MOMENT)) == MOMENT.replace(microsecond=0)
    assert parse_unix("2026-11-26T12:00:00Z") == MOMENT.replace(microsecond=0).timestamp()
    assert parse_time("2026-11-26T13:00:00+01:00") == MOMENT.replace(microsecond=0)


def test_absent_or_unreadable_times_read_as_none() -> None:
    for value in (None, "", "yesterday", 5):
        assert parse_time(value) is None
        assert parse_unix(value) is None
