"""A consumer that decodes aitl events and dead-letters what it cannot decode.

Used by every plain (non-Faust) processor and by the CLI:

    with EventConsumer(settings, group_id="g", topics=[...]) as consumer:
        for batch in consumer.batches():
            handle(batch.events)
            consumer.commit()  # only after the output is durable
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer

from kernel.errors import DeliveryError, InfraError
from kernel.events import Event
from kernel.settings import KafkaSettings
from streams.catalog import Topics
from streams.config import consumer_config, producer_config
from streams.dlq import dead_letter_headers
from streams.serde import AvroSerde, SerializationError


@dataclass(frozen=True)
class Decoded:
    """One good message: the event and where it came from."""

    event: Event
    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int


@dataclass
class Batch:
    events: list[Decoded] = field(default_factory=list)
    dead: int = 0


def _headers(msg: Message) -> list[tuple[str, bytes]]:
    raw: Any = msg.headers() or []
    items = raw.items() if isinstance(raw, dict) else raw
    return [(k, v if isinstance(v, bytes) else (v or "").encode()) for k, v in items]


class EventConsumer:
    """Poll, decode and validate; send bad messages to the DLQ and keep going."""

    def __init__(
        self,
        settings: KafkaSettings,
        group_id: str,
        topics: list[str],
        *,
        serde: AvroSerde | None = None,
        dlq_producer: Producer | None = None,
        **overrides: Any,
    ) -> None:
        self.serde = serde or AvroSerde()
        self.dlq_topic = Topics(settings).dlq
        self._consumer = Consumer(consumer_config(settings, group_id, **overrides))
        self._consumer.subscribe(topics)
        self._own_producer = dlq_producer is None
        self._dlq = dlq_producer or Producer(producer_config(settings))
        self.dead_lettered = 0

    def poll(self, max_messages: int = 500, timeout_s: float = 1.0) -> Batch:
        batch = Batch()
        for msg in self._consumer.consume(max_messages, timeout_s):
            self._handle(msg, batch)
        return batch

    def _handle(self, msg: Message, batch: Batch) -> None:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return
            raise InfraError(f"consumer error: {err}")
        topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
        try:
            event = self.serde.decode(msg.value(), topic=topic, partition=partition, offset=offset)
        except SerializationError as exc:
            self.dead_letter(msg, exc, stage=exc.kind)
            batch.dead += 1
            return
        batch.events.append(Decoded(event, topic, partition, offset, msg.key(), msg.timestamp()[1]))

    def dead_letter(self, msg: Message, error: BaseException | str, stage: str = "process") -> None:
        """Send the original message to the DLQ with the reason (used for rejects too)."""
        headers = dead_letter_headers(
            _headers(msg),
            topic=msg.topic() or "",
            partition=msg.partition() or 0,
            offset=msg.offset() or 0,
            error=error,
            stage=stage,
        )
        self._dlq.produce(
            self.dlq_topic, value=msg.value(), key=msg.key(), headers=list[Any](headers)
        )
        self._dlq.poll(0)
        self.dead_lettered += 1

    def batches(self, max_messages: int = 500, timeout_s: float = 1.0) -> Iterator[Batch]:
        while True:
            yield self.poll(max_messages, timeout_s)

    def commit(self) -> None:
        """Make the DLQ durable first, then commit the consumed offsets synchronously."""
        if self._dlq.flush(30) != 0:
            raise DeliveryError("dead letters not acknowledged; not committing offsets")
        try:
            self._consumer.commit(asynchronous=False)
        except Exception as exc:  # nothing consumed since the last commit
            if "NO_OFFSET" not in str(exc):
                raise

    def at_end(self, timeout_s: float = 5.0) -> bool:
        """True once partitions are assigned and each one is read up to its high
        watermark (an empty poll before the group assigned anything is not the end)."""
        assigned = self._consumer.assignment()
        if not assigned:
            return False
        for tp in self._consumer.position(assigned):
            low, high = self._consumer.get_watermark_offsets(tp, timeout=timeout_s, cached=False)
            if (tp.offset if tp.offset >= 0 else low) < high:
                return False
        return True

    def close(self) -> None:
        if self._own_producer:
            self._dlq.flush(30)
        self._consumer.close()

    def __enter__(self) -> EventConsumer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
