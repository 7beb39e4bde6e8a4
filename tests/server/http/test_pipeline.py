"""The pipeline's audit record: its timestamp is the one datetime would write, at a fraction of the cost."""

from __future__ import annotations

import datetime as dt
import time

from server.http.pipeline import _milliseconds, _timestamp


def test_the_timestamp_reads_as_datetimes_own_iso_format() -> None:
    for _ in range(3):  # across a second boundary too: the cached date-time part must move on
        before = dt.datetime.now(dt.UTC)
        stamp = _timestamp()
        after = dt.datetime.now(dt.UTC)
        parsed = dt.datetime.fromisoformat(stamp)
        assert stamp == parsed.isoformat(timespec="milliseconds")
        assert before - dt.timedelta(milliseconds=1) <= parsed <= after
        time.sleep(0.6)


def test_durations_round_to_the_nearest_microsecond() -> None:
    samples = [0.0, 0.0004, 0.0005, 0.8125, 1.23456, 999.9995, 12345.6789] + [i / 7 for i in range(1000)]
    for value in samples:
        rounded = _milliseconds(value)
        assert abs(rounded - value) <= 0.0005 + 1e-9, value
        assert abs(rounded * 1000 - round(rounded * 1000)) < 1e-6, value  # whole microseconds
        assert rounded == round(value, 3) or abs(value * 1000 % 1 - 0.5) < 1e-6, value  # halves may differ
