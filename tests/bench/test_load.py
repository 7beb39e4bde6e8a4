"""bench/load.py's statistics of the cost against an anchor, which the README's figures come from."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from load import Cost


def test_the_median_interval_is_the_textbook_order_statistics() -> None:
    losses = [i / 100 for i in range(100)]
    cost = Cost("raw", losses[::-1])  # in round order, not sorted

    # for 100 rounds, the 40th and 61st smallest bound the median with at least 95% confidence
    assert cost.interval == (0.39, 0.60)
    assert cost.median == 0.495


def test_six_rounds_are_the_fewest_that_give_an_interval() -> None:
    assert Cost("raw", [0.05, 0.01, 0.02, 0.04, 0.03]).interval is None
    assert Cost("raw", [0.05, 0.01, 0.02, 0.04, 0.03, 0.06]).interval == (0.01, 0.06)
