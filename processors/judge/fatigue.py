"""Per-agent fatigue signals: long runs of the default choice and sudden volume drops.

Fatigue lowers an annotation's weight instead of dropping it: a tired agent is still
often right. Time is the annotations' event time, so a replay judges the same way.
State is per worker (agents' annotations spread over partitions), which is enough to see
a run or a drop in the share of cases a worker owns.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from kernel.reasons import Reason


@dataclass
class _AgentState:
    run: int = 0  # consecutive default choices
    choices: deque[bool] = field(default_factory=lambda: deque(maxlen=200))
    buckets: dict[int, int] = field(default_factory=dict)  # hour bucket -> annotations


@dataclass(frozen=True)
class FatigueSignal:
    default_run: int
    default_rate: float  # over the agent's last 200 choices
    volume_drop: bool
    weight: float
    reasons: tuple[str, ...]


@dataclass
class FatigueTracker:
    """Updates per-agent state with each annotation and says how tired the agent looks."""

    run_threshold: int = 8
    run_weight: float = 0.5
    bucket_s: int = 3600
    history_buckets: int = 6
    min_history_mean: float = 20.0
    drop_ratio: float = 0.3
    drop_weight: float = 0.7
    agents: dict[str, _AgentState] = field(default_factory=dict)

    def observe(self, agent: str, default: bool | None, event_time: datetime) -> FatigueSignal:
        """``default``: whether the annotation was the low-effort default choice (None: not
        a choice; see ``Annotation.default_choice``)."""
        st = self.agents.setdefault(agent, _AgentState())
        if default is not None:
            st.run = st.run + 1 if default else 0
            st.choices.append(default)
        drop = self._volume(st, event_time.timestamp())
        reasons: list[str] = []
        weight = 1.0
        if st.run >= self.run_threshold:
            weight *= self.run_weight
            reasons.append(Reason.FATIGUE_DEFAULT_RUN(st.run))
        if drop:
            weight *= self.drop_weight
            reasons.append(Reason.FATIGUE_VOLUME_DROP())
        rate = sum(st.choices) / len(st.choices) if st.choices else 0.0
        return FatigueSignal(st.run, rate, drop, weight, tuple(reasons))

    def _volume(self, st: _AgentState, ts: float) -> bool:
        bucket = int(ts // self.bucket_s)
        st.buckets[bucket] = st.buckets.get(bucket, 0) + 1
        for old in [b for b in st.buckets if b < bucket - self.history_buckets]:
            del st.buckets[old]
        history = [st.buckets.get(b, 0) for b in range(bucket - self.history_buckets, bucket)]
        mean = sum(history) / len(history)
        if mean < self.min_history_mean:
            return False
        elapsed = (ts % self.bucket_s) / self.bucket_s
        if elapsed < 0.5:  # too early in the hour to call it
            return False
        return st.buckets[bucket] < self.drop_ratio * mean * elapsed
