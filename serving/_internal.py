"""Serving internals: the topic-following thread the indexer and the watcher share."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from typing import Self

from kernel.errors import InfraError
from kernel.events import Event
from kernel.settings import KafkaSettings
from streams.catalog import Topics
from streams.consumer import EventConsumer

log = logging.getLogger(__name__)


class KafkaTrouble(InfraError):
    """The topic cannot be read right now; the follower reconnects."""


class TopicFollower:
    """A daemon thread reading one compacted topic from its start, batch by batch.

    Derived state only: no offsets are committed, each (re)connection replays the topic
    under a fresh consumer group. Kafka trouble is logged and retried with back-off
    (serving goes on with what it has); an error in :meth:`handle` stops the thread and
    is kept in ``error`` for the deployment's ``check_health``.
    """

    def __init__(
        self, kafka: KafkaSettings, suffix: str, name: str, *, batch: int = 500, poll_s: float = 0.5
    ) -> None:
        self.kafka = kafka
        self.topic = Topics(kafka).name(suffix)
        self.name = name
        self.batch = batch
        self.poll_s = poll_s
        self.error: BaseException | None = None
        self.failures = 0
        self.last_kafka_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def handle(self, events: Sequence[Event]) -> None:
        """Apply one non-empty batch of decoded events."""
        raise NotImplementedError

    def on_connect(self) -> None:
        """Called before a (re)play from the start of the topic."""

    def on_idle(self) -> None:
        """Called after a poll that returned nothing, once the topic is read to its end."""

    def start(self) -> Self:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except KafkaTrouble as exc:
                self.failures += 1
                self.last_kafka_error = str(exc)
                log.warning("%s: %s unavailable (%s); retrying", self.name, self.topic, exc)
                self._stop.wait(min(30.0, 2.0**self.failures))
            except BaseException as exc:
                log.exception("%s stopped", self.name)
                self.error = exc
                return

    def _follow(self) -> None:
        group = f"{self.kafka.topic_prefix}{self.name}-{uuid.uuid4().hex[:12]}"
        try:
            consumer = EventConsumer(self.kafka, group, [self.topic])
        except Exception as exc:
            raise KafkaTrouble(str(exc)) from exc
        self.on_connect()
        at_end = False  # once read to the end, an empty poll is just idle: no more lookups
        with consumer:
            while not self._stop.is_set():
                try:
                    polled = consumer.poll(self.batch, self.poll_s)
                except RuntimeError as exc:  # consumer errors: broker gone, auth, ...
                    raise KafkaTrouble(str(exc)) from exc
                if polled.events:
                    self.failures = 0
                    self.handle([d.event for d in polled.events])
                elif at_end or consumer.at_end():
                    at_end = True
                    self.on_idle()
