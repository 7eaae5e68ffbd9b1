"""Read the dead-letter topic back (for ``aitl dlq show`` and tests)."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, KafkaError

from kernel.errors import InfraError
from kernel.settings import KafkaSettings
from streams.catalog import Topics
from streams.config import consumer_config
from streams.dlq import DeadLetter


def read_dead_letters(
    settings: KafkaSettings, limit: int = 100, idle_s: float = 3.0
) -> list[DeadLetter]:
    """The first ``limit`` dead letters, reading from the start with a throwaway group."""
    consumer = Consumer(consumer_config(settings, f"aitl-dlq-reader-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([Topics(settings).dlq])
    out: list[DeadLetter] = []
    idle = 0.0
    try:
        while len(out) < limit and idle < idle_s:
            msgs = consumer.consume(min(500, limit - len(out)), 0.5)
            idle = 0.0 if msgs else idle + 0.5
            for msg in msgs:
                err = msg.error()
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    raise InfraError(f"consumer error: {err}")
                if err is None:
                    out.append(DeadLetter.from_message(msg.key(), msg.value(), msg.headers()))
    finally:
        consumer.close()
    return out
