"""The local broker is a real Kafka: metadata, produce/consume, SASL/PLAIN, restarts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from aitl.kafka_local import LocalKafka
from kernel.settings import KafkaSettings

pytestmark = pytest.mark.timeout(300)


def client_conf(settings: KafkaSettings) -> dict[str, Any]:
    """confluent-kafka settings for the test broker (which may be an external one)."""
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap,
        "security.protocol": settings.security_protocol,
    }
    if settings.sasl_mechanism:
        conf["sasl.mechanism"] = settings.sasl_mechanism
        conf["sasl.username"] = settings.sasl_username
        if settings.sasl_password is not None:
            conf["sasl.password"] = settings.sasl_password.get_secret_value()
    return conf


def create_topic(conf: dict[str, Any], topic: str, replication: int = 1) -> None:
    admin = AdminClient(conf)  # must outlive the future: destroying it fails the request
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=replication)], operation_timeout=30
    )
    futures[topic].result(timeout=30)


def produce(conf: dict[str, Any], topic: str, key: bytes, value: bytes) -> None:
    errors: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _msg: Message) -> None:
        if error is not None:
            errors.append(error)

    producer = Producer(conf | {"acks": "all", "enable.idempotence": True})
    producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert errors == []


def consume_one(conf: dict[str, Any], topic: str, group: str, timeout_s: float = 30) -> Message:
    consumer = Consumer(conf | {"group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            return msg
    finally:
        consumer.close()
    pytest.fail(f"no message on {topic} within {timeout_s}s")


def round_trip(conf: dict[str, Any], topic: str, group: str, replication: int = 1) -> None:
    create_topic(conf, topic, replication)
    produce(conf, topic, b"ticket-1", b"hello kafka")
    msg = consume_one(conf, topic, group)
    assert (msg.topic(), msg.key(), msg.value()) == (topic, b"ticket-1", b"hello kafka")


def test_session_broker_answers_metadata(kafka_settings: KafkaSettings) -> None:
    metadata = AdminClient(client_conf(kafka_settings)).list_topics(timeout=10)
    assert metadata.brokers


def test_produce_consume_round_trip(
    kafka_settings: KafkaSettings, unique_name: Callable[[str], str]
) -> None:
    topic = kafka_settings.topic_prefix + unique_name("round-trip")
    conf = client_conf(kafka_settings)
    round_trip(conf, topic, unique_name("group"), kafka_settings.replication_factor)


@pytest.fixture(scope="module")
def sasl_kafka(local_kafka_factory: Callable[..., LocalKafka]) -> Iterator[LocalKafka]:
    kafka = local_kafka_factory(sasl_plain_users={"alice": "alice-secret", "bob": "bob-secret"})
    kafka.start(wait_s=120)
    yield kafka
    kafka.stop()


def test_sasl_plain_accepts_right_credentials(
    sasl_kafka: LocalKafka, unique_name: Callable[[str], str]
) -> None:
    conf = sasl_kafka.client_config() | {"sasl.username": "bob", "sasl.password": "bob-secret"}
    assert conf["security.protocol"] == "SASL_PLAINTEXT"
    round_trip(conf, unique_name("sasl"), unique_name("group"))


def test_sasl_plain_rejects_wrong_password(sasl_kafka: LocalKafka) -> None:
    errors: list[KafkaError] = []
    conf: dict[str, Any] = sasl_kafka.client_config() | {"sasl.password": "wrong"}
    producer = Producer(conf | {"error_cb": errors.append})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not errors:
        producer.poll(0.5)
    assert [e.code() for e in errors][:1] == [KafkaError._AUTHENTICATION]
    with pytest.raises(KafkaException):
        AdminClient(conf).list_topics(timeout=5)


def test_sasl_plain_rejects_plaintext_client(sasl_kafka: LocalKafka) -> None:
    with pytest.raises(KafkaException):
        AdminClient({"bootstrap.servers": sasl_kafka.bootstrap}).list_topics(timeout=5)


def test_restart_on_same_data_dir_keeps_messages(
    local_kafka_factory: Callable[..., LocalKafka], unique_name: Callable[[str], str]
) -> None:
    kafka = local_kafka_factory()
    kafka.start(wait_s=120)
    conf, topic = kafka.client_config(), unique_name("restart")
    create_topic(conf, topic)
    produce(conf, topic, b"k", b"survives a restart")
    # Another handle on the same dir (as the CLI has) sees the same process.
    same_dir = LocalKafka(kafka.data_dir, port=kafka.port, controller_port=kafka.controller_port)
    assert same_dir.status().pid == kafka.status().pid is not None

    assert kafka.stop() is True
    assert not kafka.is_running() and not same_dir.is_running()
    assert kafka.start(wait_s=120) == kafka.bootstrap
    assert consume_one(conf, topic, unique_name("group")).value() == b"survives a restart"
    assert kafka.stop() is True
    assert kafka.status().running is False
