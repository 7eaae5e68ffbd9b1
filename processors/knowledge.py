"""The knowledge texts, read from the compacted knowledge topic (the topic *is* the table).

Every worker needs every knowledge object (the topic is keyed by knowledge id, not by
case, so it is not co-partitioned with the annotations). A background thread assigns
all partitions from the beginning, reads to the end before the worker starts judging,
then follows upserts and retirements live. Texts are redacted on the way in.

Why not a Faust ``GlobalTable`` over the topic: faust-streaming 0.15.3's assignor looks
up a global table's changelog by its default name (``<app>-<table>-changelog``), so a
table whose changelog is an existing topic stalls the rebalance; with the default name
the data would be copied into a second topic.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator, Mapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from kernel.events import KnowledgeChanged, KnowledgeOp
from kernel.settings import KafkaSettings
from processors import metrics
from processors.redact import Redactor
from streams.catalog import Topics
from streams.config import consumer_config
from streams.serde import AvroSerde, SerializationError

log = logging.getLogger(__name__)


class KnowledgeView(Mapping[str, str]):
    """knowledge_id -> redacted text, kept current by a reader thread."""

    def __init__(
        self, settings: KafkaSettings, redactor: Redactor, serde: AvroSerde | None = None
    ) -> None:
        self.topic = Topics(settings).name("knowledge")
        self._settings = settings
        self._redactor = redactor
        self._serde = serde or AvroSerde()
        self._texts: dict[str, str] = {}
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self, wait_s: float = 60.0) -> bool:
        """Start reading; wait up to ``wait_s`` for the topic's current end. True: caught up."""
        self._thread = threading.Thread(target=self._run, name="aitl-knowledge", daemon=True)
        self._thread.start()
        ok = self._ready.wait(wait_s)
        if not ok:
            log.warning("knowledge topic not read to its end in %.0fs; continuing", wait_s)
        return ok

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        group = f"{self._settings.topic_prefix}knowledge-view-{uuid.uuid4().hex[:8]}"
        consumer = Consumer(
            consumer_config(self._settings, group, **{"enable.partition.eof": True})
        )
        try:
            meta = consumer.list_topics(self.topic, timeout=30)
            parts = sorted(meta.topics[self.topic].partitions) if self.topic in meta.topics else []
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
            ends = {
                p: consumer.get_watermark_offsets(TopicPartition(self.topic, p))[1] for p in parts
            }
            behind = {p for p, hi in ends.items() if hi > 0}
            if not behind:
                self._ready.set()
            while not self._stop.is_set():
                for msg in consumer.consume(500, 0.5):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            behind.discard(msg.partition())
                        else:
                            log.warning("knowledge reader: %s", err)
                        continue
                    part, offset = msg.partition() or 0, msg.offset() or 0
                    self._apply(msg.key(), msg.value(), part, offset)
                    if offset + 1 >= ends.get(part, 0):
                        behind.discard(part)
                if not behind and not self._ready.is_set():
                    log.info("knowledge topic read to its end: %d objects", len(self._texts))
                    self._ready.set()
        except BaseException as exc:  # surfaced through .error and the worker's health
            self.error = exc
            log.exception("knowledge reader stopped")
        finally:
            consumer.close()

    def _apply(self, key: bytes | None, value: bytes | None, partition: int, offset: int) -> None:
        if value is None:  # tombstone
            if key is not None:
                self._texts.pop(key.decode(errors="replace"), None)
            return
        try:
            event = self._serde.decode(value, topic=self.topic, partition=partition, offset=offset)
        except SerializationError as exc:
            metrics.EVENTS_CONSUMED.labels(self.topic, "undecodable").inc()
            log.warning("skipping knowledge record: %s", exc)
            return
        metrics.EVENTS_CONSUMED.labels(self.topic, event.event_type).inc()
        if not isinstance(event, KnowledgeChanged):
            return
        if event.op is KnowledgeOp.RETIRE:
            self._texts.pop(event.knowledge_id, None)
        else:
            self._texts[event.knowledge_id] = self._redactor.text(event.text)

    def __getitem__(self, key: str) -> str:
        return self._texts[key]

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return self._texts.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._texts))

    def __len__(self) -> int:
        return len(self._texts)
