"""Announce sealed shards whose ``ShardSealed`` event never went out.

A worker that dies after a shard's manifest is written and before its event is delivered
leaves a shard the store has and the topic does not: the replay finds its examples sealed
and drops them, so nothing else would ever announce it, and trainers listening to the
topic would not count its rows. On start, a worker reads the compacted ``shards.sealed``
topic to its end and announces every manifest missing there (keyed by shard id, so a
second announcement by a sibling starting at the same time compacts away).
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from kernel.errors import DeliveryError, InfraError
from kernel.events import Component
from kernel.settings import KafkaSettings
from kernel.shards import ShardStore
from processors.sealer import sealed_event
from streams.config import consumer_config, producer_config
from streams.serde import AvroSerde

log = logging.getLogger(__name__)


def announced_shards(settings: KafkaSettings, topic: str, timeout_s: float = 30.0) -> set[str]:
    """The shard ids (keys) on ``topic``, read from its start to its end right now."""
    conf = consumer_config(settings, "aitl-announce") | {"enable.partition.eof": True}
    consumer = Consumer(conf)
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
        parts = []
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout_s)
            if high > low:
                parts.append(TopicPartition(topic, p, OFFSET_BEGINNING))
        consumer.assign(parts)
        ids: set[str] = set()
        left = {p.partition for p in parts}
        while left:
            msg = consumer.poll(timeout_s)
            if msg is None:
                raise InfraError(f"{topic} not read to its end in {timeout_s:.0f}s")
            error, key = msg.error(), msg.key()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    left.discard(msg.partition() or 0)
                    continue
                raise InfraError(f"reading {topic}: {error}")
            if key is not None:
                ids.add(key.decode())
        return ids
    finally:
        consumer.close()


def announce_missing(
    settings: KafkaSettings, store: ShardStore, topic: str, serde: AvroSerde
) -> list[str]:
    """Publish ``ShardSealed`` for each sealed shard not on ``topic``; their ids.

    A broker that dies during the read (the fault suite's nemesis) is retried for a minute."""
    deadline = time.monotonic() + 60
    while True:
        try:
            seen = announced_shards(settings, topic)
            break
        except (KafkaException, InfraError) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("reading %s failed (%s): retrying", topic, exc)
            time.sleep(2)
    missing = [m for c in Component for m in store.manifests(c) if m.shard_id not in seen]
    if not missing:
        return []
    producer = Producer(producer_config(settings))
    for manifest in missing:
        event = sealed_event(store, manifest)
        producer.produce(topic, key=event.key().encode(), value=serde.encode(event, topic))
    if producer.flush(60) != 0:
        raise DeliveryError(f"{len(missing)} shard announcements not delivered")
    ids = [m.shard_id for m in missing]
    log.warning("announced %d shards sealed by a worker that died first: %s", len(ids), ids)
    return ids
