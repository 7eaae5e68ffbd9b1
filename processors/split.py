"""The temporal 90/10 train/eval split.

Rule: a **case** is assigned once, from the event time at which the processor first saw
it (the earliest event time among the events it held at that moment), and every example of
the case follows that assignment, so no case lands in both splits. Time is cut into periods
(``split_period_s``, a day by default); a case first seen in the last ``eval_fraction`` of
its period (21:36-24:00 UTC for 10% of a day) is EVAL, the rest is TRAIN.

Why this shape: a stream has no "last 10% of the data", so the split repeats per period,
and within each period eval is strictly *later* than train. Models are evaluated on
conversations that started after the ones they learned from, as they will be in
production. The assignment is stored in the changelog-backed ``cases`` table, so a
restart, a replay or a rebalance never flips it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from kernel.events import Split


@dataclass(frozen=True)
class SplitRule:
    period_s: float = 24 * 3600.0
    eval_fraction: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < self.eval_fraction < 1.0:
            raise ValueError("eval_fraction must be in (0, 1)")
        if self.period_s <= 0:
            raise ValueError("period_s must be positive")

    def split_for(self, first_seen: datetime) -> Split:
        """TRAIN or EVAL for a case first seen at ``first_seen`` (timezone-aware)."""
        return self.split_for_ms(int(first_seen.timestamp() * 1000))

    def split_for_ms(self, first_seen_ms: int) -> Split:
        period_ms = int(self.period_s * 1000)
        phase = (first_seen_ms % period_ms) / period_ms
        return Split.EVAL if phase >= 1.0 - self.eval_fraction else Split.TRAIN
