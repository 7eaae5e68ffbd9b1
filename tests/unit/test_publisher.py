"""The SDK's encoding path without a broker: envelopes filled per event, the same bytes
the serde writes for the prepared event, and contract errors before anything is sent."""

from __future__ import annotations

import uuid

import pytest

from kernel import events as ev
from kernel.settings import KafkaSettings
from streams.producer import InvalidEvent, Publisher
from streams.serde import AvroSerde

SETTINGS = KafkaSettings(bootstrap="127.0.0.1:1", topic_prefix="t.")


@pytest.fixture
def pub() -> Publisher:
    return Publisher(SETTINGS, producer_name="crm", tenant_id="acme")


def test_a_mapping_without_envelope_gets_a_fresh_one_each_time(pub: Publisher) -> None:
    body = {"case_id": "c-1", "customer_message": "Hi", "channel": "CHAT"}
    serde = AvroSerde()
    first, second = (pub.encode(body, "interaction") for _ in range(2))
    assert first[0] == "t.interactions" and first[1] == b"c-1"
    a, b = (serde.decode(x[2]) for x in (first, second))
    assert isinstance(a, ev.CustomerInteraction) and a.customer_message == "Hi"
    assert a.envelope.event_id == first[3] and b.envelope.event_id == second[3]
    assert a.envelope.event_id != b.envelope.event_id  # never the placeholder's id
    assert (a.envelope.tenant_id, a.envelope.producer) == ("acme", "crm")
    assert a.envelope.schema_version == serde.schemas[a.schema_name].version
    assert a.envelope.event_time.tzinfo is not None


def test_an_event_keeps_its_own_envelope_and_matches_prepare(pub: Publisher) -> None:
    own = ev.Envelope(event_id=uuid.uuid4(), tenant_id="acme", producer="crm")
    event = ev.CustomerInteraction(envelope=own, case_id="c-2", customer_message="Yo")
    topic, key, value, event_id = pub.encode(event)
    assert event_id == own.event_id
    assert value == AvroSerde().encode(pub.prepare(event), topic)  # the same bytes


def test_an_invalid_mapping_raises_before_anything_is_encoded(pub: Publisher) -> None:
    with pytest.raises(InvalidEvent, match="customer_message"):
        pub.encode({"case_id": "c-3"}, "interaction")


def test_an_empty_tenant_is_refused_when_the_publisher_is_made() -> None:
    with pytest.raises(ValueError, match="tenant_id"):
        Publisher(SETTINGS, tenant_id="")
