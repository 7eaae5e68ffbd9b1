"""aitl's clients against a real broker that demands SASL/PLAIN logins.

A second local Kafka 4 broker with a SASL_PLAINTEXT listener (the users and passwords
of ``sasl_plain_users``): the right credentials let ensure_topics, the Publisher, the
EventConsumer and the aiokafka clients Faust uses work; wrong ones fail with an error
that says so.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaException
from pydantic import SecretStr

from aitl.kafka_local import LocalKafka
from kernel.errors import SecurityError
from kernel.events import CustomerInteraction
from kernel.settings import KafkaSettings
from streams import admin, security
from streams.admin import ensure_topics
from streams.catalog import CATALOG, Topics
from streams.consumer import EventConsumer
from streams.producer import DeliveryError, Publisher
from tests.factories import samples

USERS = {"alice": "alice-pw-4b1d", "bob": "bob-pw-77e0"}
FAST_TIMEOUT: dict[str, Any] = {"message.timeout.ms": 3000}


@pytest.fixture(scope="module")
def sasl_bootstrap(local_kafka_factory: Callable[..., LocalKafka]) -> str:
    return local_kafka_factory(sasl_plain_users=USERS).start(wait_s=120)


def settings(bootstrap: str, user: str, password: str, prefix: str) -> KafkaSettings:
    return KafkaSettings(
        bootstrap=bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username=user,
        sasl_password=SecretStr(password),
        topic_prefix=prefix,
    )


def test_right_credentials_create_publish_and_consume(
    sasl_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    kafka = settings(sasl_bootstrap, "alice", USERS["alice"], unique_name("sasl") + ".")
    assert admin.check_connection(kafka) == 1
    report = ensure_topics(kafka)
    assert len(report.created) == len(CATALOG) and not report.drift

    sent = [samples(case_id=f"case-{i}")["interaction"] for i in range(20)]
    with Publisher(kafka, producer_name="sasl-test") as publisher:
        ids = {publisher.publish(event) for event in sent}

    # bob reads what alice wrote: any valid user of the cluster can
    reader = settings(sasl_bootstrap, "bob", USERS["bob"], kafka.topic_prefix)
    topic = Topics(reader).for_event(CustomerInteraction)
    got: set[uuid.UUID] = set()
    deadline = time.monotonic() + 30
    with EventConsumer(reader, unique_name("g"), [topic]) as consumer:
        while len(got) < len(ids) and time.monotonic() < deadline:
            batch = consumer.poll(100, 1.0)
            got.update(d.event.envelope.event_id for d in batch.events)
            assert batch.dead == 0
        consumer.commit()
    assert got == ids
    assert ensure_topics(kafka).created == []  # idempotent over SASL too


async def test_aiokafka_clients_faust_uses_log_in(
    sasl_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    kafka = settings(sasl_bootstrap, "bob", USERS["bob"], unique_name("sasl") + ".")
    ensure_topics(kafka)
    topic = Topics(kafka).name("interactions")
    cfg = security.aiokafka_security(kafka)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, **cfg)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"raw-bytes", key=b"case-1")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap,
        group_id=unique_name("g"),
        auto_offset_reset="earliest",
        **cfg,
    )
    await consumer.start()
    try:
        message = await consumer.getone()
    finally:
        await consumer.stop()
    assert (message.key, message.value) == (b"case-1", b"raw-bytes")


def test_wrong_password_is_refused_with_a_clear_error(sasl_bootstrap: str) -> None:
    wrong = settings(sasl_bootstrap, "alice", "not-alices-password", "never.")
    started = time.monotonic()
    with pytest.raises(SecurityError) as refused:
        admin.check_connection(wrong, timeout_s=20)
    assert time.monotonic() - started < 10
    message = str(refused.value)
    assert "Authentication failed" in message and "'alice' (PLAIN)" in message
    assert "not-alices-password" not in message

    unknown = settings(sasl_bootstrap, "mallory", USERS["alice"], "never.")
    with pytest.raises(SecurityError, match="'mallory'"):
        admin.check_connection(unknown, timeout_s=20)


def test_wrong_password_fails_the_publisher_and_admin(sasl_bootstrap: str) -> None:
    """They fail rather than hang (the publisher's error names the cause once client_config
    sets ``error_cb``, see the test below)."""
    wrong = settings(sasl_bootstrap, "alice", "not-alices-password", f"t{uuid.uuid4().hex[:8]}.")
    with pytest.raises(KafkaException):
        ensure_topics(wrong, timeout_s=5)
    with (
        pytest.raises((DeliveryError, SecurityError)),
        Publisher(wrong, **FAST_TIMEOUT) as publisher,
    ):
        publisher.publish(samples()["interaction"])


def test_wrong_password_stops_the_event_consumer(
    sasl_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    wrong = settings(sasl_bootstrap, "alice", "not-alices-password", "never.")
    with (
        pytest.raises(SecurityError, match="Authentication failed"),
        EventConsumer(wrong, unique_name("g"), ["never.interactions"]) as consumer,
    ):
        for _ in range(5):
            consumer.poll(10, 1.0)
