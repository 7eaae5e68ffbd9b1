"""The fault suite's client side: a publisher that retries with the same event ids and
records what was acknowledged, a seeded nemesis, and a reader of whole topics.

The operation history is what the checker compares with the topics: every event the
cluster acknowledged must be in its topic exactly once (by event id)."""

from __future__ import annotations

import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from aitl.kafka_local import LocalKafkaCluster
from kernel.events import Event
from kernel.settings import KafkaSettings
from streams.config import consumer_config
from streams.producer import Publisher
from streams.serde import AvroSerde


@dataclass
class History:
    """What the clients did and what the nemesis did, with times since the start."""

    started: float = field(default_factory=time.monotonic)
    faults: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    retries: int = 0
    acknowledged: set[uuid.UUID] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fault(self, kind: str, target: str, **extra: Any) -> None:
        at = round(time.monotonic() - self.started, 1)
        with self.lock:
            self.faults.append({"at_s": at, "kind": kind, "target": target, **extra})


class RetryingPublisher:
    """Publishes through the SDK; an event whose delivery failed is published again with
    the same envelope (so the same event id) until the cluster acknowledges it."""

    def __init__(self, settings: KafkaSettings, history: History, timeout_ms: int) -> None:
        self.history = history
        self.pub = Publisher(settings, producer_name="faults", **{"message.timeout.ms": timeout_ms})
        self.failed: list[Event] = []
        self.by_id: dict[uuid.UUID, Event] = {}

    def _report(self, event_id: uuid.UUID, err: KafkaError | None) -> None:
        with self.history.lock:
            if err is None:
                self.history.acknowledged.add(event_id)
            else:
                self.failed.append(self.by_id[event_id])

    def publish(self, events: list[Event], pace_s: float = 0.0) -> None:
        for event in events:
            self.by_id[event.envelope.event_id] = event
            self.history.attempts += 1
            self.pub.publish(event, on_delivery=self._report)
            if pace_s:
                time.sleep(pace_s)
            self._retry()

    def _retry(self) -> None:
        with self.history.lock:
            again, self.failed = self.failed, []
        for event in again:
            self.history.attempts += 1
            self.history.retries += 1
            self.pub.publish(event, on_delivery=self._report)

    def drain(self, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.pub.flush(5)
            self._retry()
            with self.history.lock:
                if not self.failed and self.pub.flush(0) == 0:
                    return
        raise TimeoutError("events still unacknowledged after the drain")


class Nemesis:
    """Seeded faults, one at a time: SIGKILL a broker and restart it, SIGSTOP a broker
    past the session timeout, SIGKILL a processor worker and start another. At most one
    broker is ever down, so the controller quorum and min.insync.replicas=2 hold."""

    KINDS = ("kill_broker", "pause_broker", "kill_worker")

    def __init__(
        self,
        cluster: LocalKafkaCluster,
        kill_worker: Callable[[random.Random], str],
        history: History,
        seed: int,
        pause_s: float,
        gap_s: float = 1.0,
    ) -> None:
        self.cluster, self._kill_a_worker, self.history = cluster, kill_worker, history
        self.rng = random.Random(seed)
        self.pause_s, self.gap_s = pause_s, gap_s
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(180)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                getattr(self, self.rng.choice(self.KINDS))()
                self._stop.wait(self.gap_s)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def kill_broker(self) -> None:
        node = self.rng.choice(self.cluster.nodes)
        node.send_signal(signal.SIGKILL)
        self.history.fault("sigkill", f"broker-{node.node_id}")
        self._stop.wait(self.rng.uniform(1, 4))
        node.launch()
        self.cluster.wait_ready(120, [node])

    def pause_broker(self) -> None:
        node = self.rng.choice(self.cluster.nodes)
        node.send_signal(signal.SIGSTOP)
        self.history.fault("sigstop", f"broker-{node.node_id}", seconds=self.pause_s)
        time.sleep(self.pause_s)
        node.send_signal(signal.SIGCONT)
        self.cluster.wait_ready(120, [node])

    def kill_worker(self) -> None:
        self.history.fault("sigkill", self._kill_a_worker(self.rng))


def read_event_ids(
    settings: KafkaSettings, topics: list[str], serde: AvroSerde, timeout_s: float = 60
) -> Counter[uuid.UUID]:
    """How often each event id is in ``topics``, read from their start to their end."""
    consumer = Consumer(
        consumer_config(settings, f"faults-{uuid.uuid4().hex[:8]}") | {"enable.partition.eof": True}
    )
    counts: Counter[uuid.UUID] = Counter()
    try:
        parts = []
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
            for p in meta.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout_s)
                if high > low:
                    parts.append(TopicPartition(topic, p, OFFSET_BEGINNING))
        consumer.assign(parts)
        left = {(p.topic, p.partition) for p in parts}
        deadline = time.monotonic() + timeout_s
        while left and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    left.discard((msg.topic(), msg.partition()))
                continue
            try:
                event = serde.decode(msg.value() or b"")
            except Exception:  # the garbage the test publishes raw
                continue
            counts[event.envelope.event_id] += 1  # type: ignore[attr-defined]
        if left:
            raise TimeoutError(f"{len(left)} partitions not read to their end")
    finally:
        consumer.close()
    return counts
