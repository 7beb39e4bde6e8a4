"""The pipeline's audit record: its timestamp is the one datetime would write, at a fraction of the cost."""

from __future__ import annotations

import datetime as dt
import time

from server.http.pipeline import _timestamp


def test_the_timestamp_reads_as_datetimes_own_iso_format() -> None:
    for _ in range(3):  # across a second boundary too: the cached date-time part must move on
        before = dt.datetime.now(dt.UTC)
        stamp = _timestamp()
        after = dt.datetime.now(dt.UTC)
        parsed = dt.datetime.fromisoformat(stamp)
        assert stamp == parsed.isoformat(timespec="milliseconds")
        assert before - dt.timedelta(milliseconds=1) <= parsed <= after
        time.sleep(0.6)
