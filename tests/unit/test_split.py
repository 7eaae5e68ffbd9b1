"""The temporal 90/10 split: per period, eval is the latest 10%; a case never moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kernel.events import Split
from processors.split import SplitRule

DAY = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "split"),
    [
        (DAY, Split.TRAIN),
        (DAY + timedelta(hours=21, minutes=35), Split.TRAIN),
        (DAY + timedelta(hours=21, minutes=36), Split.EVAL),  # 90% of 24 h
        (DAY + timedelta(hours=23, minutes=59), Split.EVAL),
        (DAY + timedelta(days=1), Split.TRAIN),  # the next period starts with train
    ],
)
def test_the_last_tenth_of_each_day_is_eval(at: datetime, split: Split) -> None:
    assert SplitRule().split_for(at) is split


def test_about_ten_percent_of_uniform_first_sightings_are_eval() -> None:
    rule = SplitRule()
    splits = [rule.split_for(DAY + timedelta(minutes=7 * i)) for i in range(2000)]
    share = splits.count(Split.EVAL) / len(splits)
    assert 0.09 < share < 0.11


def test_eval_is_always_later_than_train_within_a_period() -> None:
    rule = SplitRule(period_s=3600, eval_fraction=0.25)
    times = [DAY + timedelta(seconds=s) for s in range(0, 3600, 60)]
    train = [t for t in times if rule.split_for(t) is Split.TRAIN]
    evals = [t for t in times if rule.split_for(t) is Split.EVAL]
    assert train and evals and max(train) < min(evals)


def test_bad_fractions_are_refused() -> None:
    with pytest.raises(ValueError):
        SplitRule(eval_fraction=1.0)
