"""The publisher SDK contact-center software uses to send events to aitl.

    with Publisher(settings) as pub:
        pub.publish(CustomerInteraction(case_id="c-1", customer_message="Hi"))
        pub.publish({"case_id": "c-1", ...}, event_type="preference")

Events are validated before anything is produced: invalid input raises one
:class:`InvalidEvent` that names the fields. The producer is idempotent with
``acks=all``; ``flush()`` waits for delivery reports, and leaving the ``with`` block
raises :class:`DeliveryError` if any event was not acknowledged.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, cast

from confluent_kafka import KafkaError, Message, Producer
from pydantic import ValidationError

from kernel.envelope import utcnow
from kernel.errors import ContractError, DeliveryError
from kernel.events import EVENT_TYPES, Envelope, Event
from kernel.settings import KafkaSettings
from streams.catalog import Topics
from streams.config import producer_config
from streams.serde import AvroSerde, describe_validation_error


class InvalidEvent(ContractError):
    """The event does not match its contract; ``errors`` maps field path to message."""

    def __init__(self, event_type: str, errors: dict[str, str]) -> None:
        detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
        super().__init__(f"invalid {event_type} event: {detail}", event_type=event_type)
        self.event_type = event_type
        self.errors = errors


DeliveryCallback = Callable[[uuid.UUID, KafkaError | None], None]


def validate_event(payload: Event | Mapping[str, Any], event_type: str | None = None) -> Event:
    """Build the typed event from a model or a JSON-like mapping, or raise InvalidEvent."""
    if isinstance(payload, Event):
        return payload
    if event_type is None:
        raise InvalidEvent("unknown", {"event_type": "needed when publishing a mapping"})
    cls = EVENT_TYPES.get(event_type)
    if cls is None:
        known = ", ".join(sorted(EVENT_TYPES))
        raise InvalidEvent(event_type, {"event_type": f"unknown type; known: {known}"})
    try:
        return cls.model_validate(payload)
    except ValidationError as exc:
        errors = {}
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(event)"
            errors[loc] = err["msg"]
        raise InvalidEvent(event_type, errors) from exc


class Publisher:
    """Validating, idempotent producer of aitl events."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        producer_name: str = "aitl-sdk",
        tenant_id: str = "default",
        serde: AvroSerde | None = None,
        on_delivery: DeliveryCallback | None = None,
        **overrides: Any,
    ) -> None:
        self.topics = Topics(settings)
        self.serde = serde or AvroSerde()
        # checked once here, so that each event's envelope can be built without validation
        checked = Envelope(tenant_id=tenant_id, producer=producer_name)
        self.producer_name, self.tenant_id = checked.producer, checked.tenant_id
        self._placeholder = checked  # never published: encode() replaces it
        self._on_delivery = on_delivery
        self._producer = Producer(producer_config(settings, **overrides))
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed: list[tuple[uuid.UUID, str]] = []

    def prepare(self, payload: Event | Mapping[str, Any], event_type: str | None = None) -> Event:
        """Validate and fill the envelope (id, time, tenant, producer, schema version)."""
        event = validate_event(payload, event_type)
        version = self.serde.schemas[event.schema_name].version
        if "envelope" in event.model_fields_set:
            env = event.envelope.model_copy(update={"schema_version": version})
        else:
            env = Envelope(
                tenant_id=self.tenant_id, producer=self.producer_name, schema_version=version
            )
        return event.model_copy(update={"envelope": env})

    def encode(
        self, payload: Event | Mapping[str, Any], event_type: str | None = None
    ) -> tuple[str, bytes, bytes, uuid.UUID]:
        """What :meth:`prepare` and the serde do, without building a second event: the
        Avro record gets its envelope as a plain dict (the settings' tenant and producer
        were checked once), so no envelope is validated and no event copied per call.
        Returns (topic, key, value, event id)."""
        fresh = not isinstance(payload, Event) and "envelope" not in payload
        if fresh:  # spare pydantic a default envelope that would be thrown away
            payload = {**cast(Mapping[str, Any], payload), "envelope": self._placeholder}
        event = validate_event(payload, event_type)
        version = self.serde.schemas[event.schema_name].version
        record = event.to_avro()
        if not fresh and "envelope" in event.model_fields_set:
            record["envelope"]["schema_version"] = version
        else:
            record["envelope"] = {
                "event_id": uuid.uuid4(),
                "event_time": utcnow(),
                "tenant_id": self.tenant_id,
                "schema_version": version,
                "producer": self.producer_name,
            }
        topic = self.topics.for_event(event)
        value = self.serde.encode_record(event.schema_name, record, topic)
        return topic, event.key().encode(), value, record["envelope"]["event_id"]

    def publish(
        self,
        payload: Event | Mapping[str, Any],
        event_type: str | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> uuid.UUID:
        """Validate, encode and enqueue one event; returns its event id."""
        return self.publish_many([payload], event_type, on_delivery)[0]

    def publish_many(
        self,
        payloads: Iterable[Event | Mapping[str, Any]],
        event_type: str | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> list[uuid.UUID]:
        """Validate all first, then produce: a batch with one bad event produces nothing.

        ``on_delivery(event_id, error)`` is called from the delivery report of each event
        (in addition to the publisher-wide callback)."""
        encoded = [self.encode(p, event_type) for p in payloads]
        for topic, key, value, event_id in encoded:
            self._produce(topic, key, value, event_id, on_delivery)
        return [event_id for *_, event_id in encoded]

    def _produce(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        event_id: uuid.UUID,
        on_delivery: DeliveryCallback | None,
    ) -> None:
        if on_delivery is None and self._on_delivery is None:
            report: Callable[[KafkaError | None, Message], None] = self._report
        else:

            def report(err: KafkaError | None, msg: Message) -> None:
                self._report(err, msg, event_id)
                for callback in (self._on_delivery, on_delivery):
                    if callback is not None:
                        callback(event_id, err)

        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=report)
                break
            except BufferError:
                self._producer.poll(0.05)  # local queue full: serve callbacks, then retry
        self._producer.poll(0)

    def _report(
        self, err: KafkaError | None, msg: Message, event_id: uuid.UUID | None = None
    ) -> None:
        """Counts deliveries; a failure is recorded with its event id (decoded if needed)."""
        if err is None:
            with self._lock:
                self.delivered += 1
            return
        if event_id is None:
            try:
                event_id = self.serde.decode(msg.value()).envelope.event_id
            except Exception:
                event_id = uuid.UUID(int=0)
        with self._lock:
            self.failed.append((event_id, str(err)))

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for delivery reports; returns how many events are still in flight."""
        return int(self._producer.flush(timeout_s))

    def poll(self, timeout_s: float = 0.0) -> None:
        self._producer.poll(timeout_s)

    def close(self, timeout_s: float = 30.0) -> int:
        """Flush and release the client; returns how many events were still in flight."""
        pending = self.flush(timeout_s)
        if pending:
            self._producer.purge()
        self._producer.poll(0)
        del self._producer
        return pending

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pending = self.close()
        if exc_type is None and (pending or self.failed):
            raise DeliveryError(
                f"{pending} events still in flight, {len(self.failed)} failed"
                + (f"; first failure: {self.failed[0][1]}" if self.failed else "")
            )


__all__ = [
    "DeliveryError",
    "InvalidEvent",
    "Publisher",
    "describe_validation_error",
    "validate_event",
]
