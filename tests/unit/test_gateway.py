"""The gateway's trust boundary: who may publish what, in which shape and size, and what
its answers and metrics reveal. Kafka is a fake that acknowledges at once."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError
from fastapi.testclient import TestClient

from kernel.events import ANNOTATIONS, EVENT_TYPES
from kernel.settings import KafkaSettings, Settings
from streams.gateway import PUBLISHABLE, create_app
from streams.producer import DeliveryCallback, Publisher
from tests.factories import as_json, samples

TOKEN = "tok-gw-1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
INTERNAL = ("model", "knowledge", "judge-verdict", "shard-sealed")


class FakeKafka(Publisher):
    """The real validation, envelope and encoding; the produce is recorded and
    acknowledged at once (or refused with ``error``)."""

    def __init__(self) -> None:
        super().__init__(KafkaSettings(), producer_name="aitl-gateway")
        self.sent: list[str] = []
        self.error: KafkaError | None = None

    def _produce(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        event_id: uuid.UUID,
        on_delivery: DeliveryCallback | None,
    ) -> None:
        self.sent.append(topic)
        if on_delivery is not None:
            on_delivery(event_id, self.error)


@pytest.fixture
def kafka() -> FakeKafka:
    return FakeKafka()


@pytest.fixture
def gateway(kafka: FakeKafka) -> Iterator[Callable[..., TestClient]]:
    """A started gateway (with tokens) around the fake Kafka; settings can be overridden."""
    clients: list[TestClient] = []

    def start(**overrides: Any) -> TestClient:
        settings = Settings(api_tokens=TOKEN, **overrides)
        client = TestClient(create_app(settings, ack_timeout_s=0.5, publisher=kafka))
        clients.append(client.__enter__())
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def test_clients_publish_interactions_suggestions_and_every_annotation_type(
    gateway: Callable[..., TestClient], kafka: FakeKafka
) -> None:
    client = gateway()
    allowed = ["interaction", "suggestion", *(a.event_type for a in ANNOTATIONS)]
    for event_type in allowed:
        r = client.post(
            f"/v1/events/{event_type}", json=as_json(samples()[event_type]), headers=AUTH
        )
        assert r.status_code == 202, (event_type, r.text)
    assert len(kafka.sent) == len(allowed)
    assert set(allowed) == PUBLISHABLE  # declared once, on the event classes


@pytest.mark.parametrize("event_type", INTERNAL)
def test_internal_types_are_forbidden_and_nothing_is_produced(
    gateway: Callable[..., TestClient], kafka: FakeKafka, event_type: str
) -> None:
    """One POST must not swap the serving model or poison the knowledge index."""
    client = gateway()
    r = client.post(f"/v1/events/{event_type}", json=as_json(samples()[event_type]), headers=AUTH)
    assert r.status_code == 403
    assert "may not publish" in r.json()["error"] and "interaction" in r.json()["publishable"]
    assert kafka.sent == []


def test_every_type_is_either_publishable_or_forbidden() -> None:
    assert set(EVENT_TYPES) - PUBLISHABLE == set(INTERNAL)


def test_an_unknown_type_is_still_a_400_naming_the_known_ones(
    gateway: Callable[..., TestClient], kafka: FakeKafka
) -> None:
    r = gateway().post("/v1/events/teleport", json={"case_id": "c"}, headers=AUTH)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid teleport event"
    assert "known:" in r.json()["errors"][0]["message"]
    assert kafka.sent == []


def test_metric_labels_name_only_known_types(gateway: Callable[..., TestClient]) -> None:
    """A URL's type becomes a label only when it is known: no unbounded series."""
    client = gateway()
    client.post("/v1/events/made-up-1", json={}, headers=AUTH)  # 400, unknown
    client.post("/v1/events/made-up-2", json={})  # 401
    client.post("/v1/events/interaction", json={})  # 401 for a known type too
    client.post("/v1/events/model", json={}, headers=AUTH)  # 403
    text = client.get("/metrics").text
    assert "made-up" not in text
    assert 'event_type="unknown",status="400"' in text
    assert 'event_type="unauthorized",status="401"' in text
    assert 'event_type="interaction",status="401"' not in text
    assert 'event_type="model",status="403"' in text
