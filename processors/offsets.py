"""In-order acknowledgement: an offset is acknowledged only when it and every earlier
offset of its partition are done.

Done means: decided, its examples are in sealed shards, and every message produced for
it (verdict, dead letter, shard-sealed event) was acknowledged by the cluster. Faust
commits the highest *contiguous* acknowledged offset, and its bookkeeping assumes acks
arrive roughly in order (an early unacknowledged offset can be skipped over otherwise),
so acknowledging strictly in offset order per partition is what makes "commit only
after the shard is sealed" hold.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kernel.errors import DeliveryError

TP = tuple[str, int]  # (topic, partition)


@dataclass(eq=False)
class Ticket:
    """One consumed message on its way to being acknowledged."""

    topic: str
    partition: int
    offset: int
    handle: Any = None  # what the edge acknowledges (a faust event)
    holds: int = 1  # open obligations; the first one is "not yet decided"
    futures: list[Any] = field(default_factory=list)  # asyncio futures of produced messages

    def hold(self) -> None:
        self.holds += 1

    def release(self) -> None:
        if self.holds <= 0:
            where = f"{self.topic}/{self.partition}@{self.offset}"
            raise RuntimeError(f"release without hold at {where}")
        self.holds -= 1

    def done(self) -> bool:
        """Decided, sealed, and everything produced for it is acknowledged."""
        if self.holds:
            return False
        for fut in self.futures:
            done = getattr(fut, "done", None)
            if done is not None and not done():
                return False
            exc = fut.exception() if hasattr(fut, "exception") else None
            if exc is not None:
                raise DeliveryError(
                    f"not acknowledged: {exc}",
                    topic=self.topic,
                    partition=self.partition,
                    offset=self.offset,
                ) from exc
        return True


class AckTracker:
    """Tickets per partition, in offset order; hands back the done prefix of each."""

    def __init__(self) -> None:
        self._queues: dict[TP, deque[Ticket]] = {}

    def track(self, topic: str, partition: int, offset: int, handle: Any = None) -> Ticket:
        ticket = Ticket(topic, partition, offset, handle)
        self._queues.setdefault((topic, partition), deque()).append(ticket)
        return ticket

    def ackable(self) -> list[Ticket]:
        """Pop and return the tickets that may be acknowledged now, in order."""
        out: list[Ticket] = []
        for queue in self._queues.values():
            while queue and queue[0].done():
                out.append(queue.popleft())
        return out

    def drop(self, tps: Iterable[TP]) -> int:
        """Forget partitions this worker lost (their messages will be read again elsewhere)."""
        n = 0
        for tp in tps:
            n += len(self._queues.pop(tp, ()))
        return n

    def tickets(self) -> list[Ticket]:
        return [t for q in self._queues.values() for t in q]

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def next_offsets(self) -> dict[TP, int]:
        """The oldest unacknowledged offset per partition (for lag and diagnostics)."""
        return {tp: q[0].offset for tp, q in self._queues.items() if q}


class GapGuard:
    """Notices offsets the consumer skipped, so the edge can seek back and read them.

    faust-streaming drops (without acknowledging) messages fetched just before or during
    a rebalance: it compares each message's generation and the flow control state. Nothing
    is lost in Kafka, but those offsets would never be processed in this session. The
    guard tracks the next offset expected per partition. A later offset is a gap: the
    edge seeks back, and later offsets are dropped until the expected one arrives (or,
    after ``reread_s``, the gap is accepted as real: transaction markers leave gaps). An
    earlier offset is a re-delivery and is dropped. A partition whose high watermark stays
    above the expected offset while nothing arrives has had its tail skipped.
    """

    def __init__(self, reread_s: float = 10.0) -> None:
        self.reread_s = reread_s
        self.expected: dict[TP, int] = {}
        self._last_seen: dict[TP, float] = {}
        self._rereading: dict[TP, tuple[int, float]] = {}  # tp -> (offset, deadline)
        self._tail_reread: dict[TP, int] = {}

    def start(self, tp: TP, offset: int, now: float) -> None:
        self.expected.setdefault(tp, offset)
        self._last_seen.setdefault(tp, now)

    def check(self, tp: TP, offset: int, now: float) -> str:
        """``ok`` (process it), ``drop`` (a re-delivery, or past a gap being re-read) or
        ``gap`` (drop it and seek back to ``expected[tp]``)."""
        expected = self.expected.get(tp)
        if expected is not None and offset < expected:
            return "drop"
        if expected is not None and offset > expected:
            rereading = self._rereading.get(tp)
            if rereading is None or rereading[0] != expected:
                self._rereading[tp] = (expected, now + self.reread_s)
                return "gap"
            if now < rereading[1]:
                return "drop"
        self._rereading.pop(tp, None)
        self.expected[tp] = offset + 1
        self._last_seen[tp] = now
        return "ok"

    def stalled(self, tp: TP, highwater: int, now: float, idle_s: float) -> int | None:
        """The offset to re-read from if this partition's tail may have been skipped (the
        edge confirms with the consumer's position, then calls ``rereading_tail``)."""
        expected = self.expected.get(tp)
        if expected is None or highwater <= expected or self._tail_reread.get(tp) == expected:
            return None
        if now - self._last_seen.get(tp, now) < idle_s:
            return None
        return expected

    def rereading_tail(self, tp: TP, offset: int) -> None:
        """Seeking back to ``offset``: do not do it twice for the same offset."""
        self._tail_reread[tp] = offset

    def forget(self, tps: Iterable[TP]) -> None:
        for tp in tps:
            for state in (self.expected, self._last_seen, self._rereading, self._tail_reread):
                state.pop(tp, None)
