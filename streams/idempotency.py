"""What makes a retried gateway request safe: event ids a client fixes (its own
``envelope.event_id``, or ones derived from an ``Idempotency-Key``) and a bounded memory
of the ids Kafka acknowledged, per tenant, so a retry publishes only what was not.

The memory is one process's and bounded: past ``size`` ids, or after a restart, a retry
publishes again, with the same event ids, and the processors drop the copies (training
example ids derive from event ids: ``kernel.annotations.base.common``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict

# the namespace of event ids derived from idempotency keys (uuid5)
KEY_NAMESPACE = uuid.UUID("5d0f8f0e-5d35-4c4e-9a53-0b6f2b1a7a14")
MAX_KEY_CHARS = 255

Key = tuple[str, uuid.UUID]  # (tenant, event id)


def derived_event_id(tenant: str, idempotency_key: str, event_type: str, index: int) -> uuid.UUID:
    """The event id of item ``index`` of a request sent with ``idempotency_key``: the same
    for every retry of that request (same items, same order), distinct across tenants."""
    return uuid.uuid5(KEY_NAMESPACE, f"{tenant}\n{idempotency_key}\n{event_type}\n{index}")


class RecentIds:
    """The last ``size`` acknowledged (tenant, event id) pairs, and the ones in flight
    (a retry that arrives while the first attempt waits for Kafka waits on it)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._done: OrderedDict[Key, None] = OrderedDict()
        self.in_flight: dict[Key, asyncio.Future[bool]] = {}

    def __contains__(self, key: Key) -> bool:
        return key in self._done

    def __len__(self) -> int:
        return len(self._done)

    def add(self, key: Key) -> None:
        self._done[key] = None
        self._done.move_to_end(key)
        while len(self._done) > self.size:
            self._done.popitem(last=False)


__all__ = ["KEY_NAMESPACE", "MAX_KEY_CHARS", "RecentIds", "derived_event_id"]
