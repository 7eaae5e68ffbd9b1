"""Per-agent reliability: an agent's own track record with the judge.

A careless agent is rarely caught by every annotation it writes: a random "relevant" on
knowledge the reply did not use contradicts nothing the rules can check. It is caught by
the others: the boilerplate rationale, the preference its sent reply contradicts. So the
judge keeps, per agent, the share of its last ``window`` annotations that the rules
rejected on their own, and

* rejects everything from an agent whose share is above ``max_reject_rate`` (once it has
  ``min_annotations`` on record), with the reason ``unreliable_agent:<share>``;
* otherwise multiplies the weight by ``1 - share``.

The share counts ``prior`` clean annotations on top of the record, so one early slip
does not halve a new agent's weight.

Only the rules' own rejections go on the record, never ``unreliable_agent`` itself, so
an agent whose annotations become sound again earns its way back within one window.
Like fatigue, the state is per worker and rebuilt from nothing on a restart.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from kernel.reasons import Reason


@dataclass(frozen=True)
class ReliabilitySignal:
    reject_rate: float  # over the agent's record before this annotation
    weight: float
    reasons: tuple[str, ...]


@dataclass
class ReliabilityTracker:
    window: int = 40
    min_annotations: int = 8
    max_reject_rate: float = 0.25
    prior: int = 4
    agents: dict[str, deque[bool]] = field(default_factory=dict)

    def observe(self, agent: str, rejected_by_rules: bool) -> ReliabilitySignal:
        """The agent's standing before this annotation; then this one goes on record."""
        record = self.agents.setdefault(agent, deque(maxlen=self.window))
        n = len(record)
        rate = sum(record) / (n + self.prior)
        record.append(rejected_by_rules)
        if n >= self.min_annotations and rate > self.max_reject_rate:
            return ReliabilitySignal(rate, 0.0, (Reason.UNRELIABLE_AGENT(f"{rate:.2f}"),))
        return ReliabilitySignal(rate, 1.0 - rate, ())
