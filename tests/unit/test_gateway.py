"""The gateway's trust boundary: who may publish what, in which shape and size, and what
its answers and metrics reveal. Kafka is a fake that acknowledges at once."""

from __future__ import annotations

import json
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


def _interaction(case: int = 1) -> dict[str, Any]:
    return as_json(samples(case_id=f"case-{case}")["interaction"])


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1", None],
)
def test_a_body_that_is_not_json_by_its_content_type_is_a_415(
    gateway: Callable[..., TestClient], kafka: FakeKafka, content_type: str | None
) -> None:
    headers = AUTH | ({"Content-Type": content_type} if content_type else {})
    body = json.dumps(_interaction()).encode()
    r = gateway().post("/v1/events/interaction", content=body, headers=headers)
    assert r.status_code == 415 and "application/json" in r.json()["error"]
    assert kafka.sent == []


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON; charset=UTF-8"])
def test_json_with_or_without_a_utf8_charset_is_accepted(
    gateway: Callable[..., TestClient], content_type: str
) -> None:
    body = json.dumps(_interaction()).encode()
    headers = AUTH | {"Content-Type": content_type}
    assert (
        gateway().post("/v1/events/interaction", content=body, headers=headers).status_code == 202
    )


def test_a_body_over_the_size_limit_is_a_413_declared_or_streamed(
    gateway: Callable[..., TestClient], kafka: FakeKafka
) -> None:
    client = gateway(gateway_max_body_bytes=2000)
    big = json.dumps([_interaction(i) for i in range(20)]).encode()
    assert len(big) > 2000
    headers = AUTH | {"Content-Type": "application/json"}
    r = client.post("/v1/events/interaction", content=big, headers=headers)
    assert r.status_code == 413 and "2000 bytes" in r.json()["error"]
    chunks = (big[i : i + 500] for i in range(0, len(big), 500))  # chunked: no length
    r = client.post("/v1/events/interaction", content=chunks, headers=headers)
    assert r.status_code == 413
    small = json.dumps(_interaction()).encode()
    assert client.post("/v1/events/interaction", content=small, headers=headers).status_code == 202
    assert len(kafka.sent) == 1


def test_the_default_body_limit_is_one_mebibyte() -> None:
    assert Settings().gateway_max_body_bytes == 1 << 20


def test_a_batch_over_the_item_limit_is_a_413(
    gateway: Callable[..., TestClient], kafka: FakeKafka
) -> None:
    client = gateway(gateway_max_batch=3)
    r = client.post(
        "/v1/events/interaction", json=[_interaction(i) for i in range(4)], headers=AUTH
    )
    assert r.status_code == 413 and "at most 3" in r.json()["error"]
    assert kafka.sent == []
    r = client.post(
        "/v1/events/interaction", json=[_interaction(i) for i in range(3)], headers=AUTH
    )
    assert r.status_code == 202 and len(kafka.sent) == 3


@pytest.mark.parametrize("body", [b"[" * 200_000, b'{"a":' * 100_000, b"[" * 33 + b"]" * 33])
def test_deep_nesting_is_a_400_not_a_500(
    gateway: Callable[..., TestClient], kafka: FakeKafka, body: bytes
) -> None:
    headers = AUTH | {"Content-Type": "application/json"}
    r = gateway().post("/v1/events/interaction", content=body, headers=headers)
    assert r.status_code == 400 and "nested deeper than 32" in r.json()["error"]
    assert kafka.sent == []


def test_brackets_and_escaped_quotes_inside_strings_are_not_nesting(
    gateway: Callable[..., TestClient], kafka: FakeKafka
) -> None:
    """The depth is counted outside strings: a customer may type brackets."""
    message = "[[[{" * 50 + '\\"[[ \\\\" {{{' + "[" * 40
    r = gateway().post(
        "/v1/events/interaction", json=_interaction() | {"customer_message": message}, headers=AUTH
    )
    assert r.status_code == 202, r.text
    assert len(kafka.sent) == 1


def test_errors_carry_a_request_id_and_never_exception_text(
    gateway: Callable[..., TestClient], kafka: FakeKafka, caplog: pytest.LogCaptureFixture
) -> None:
    """A Kafka failure or a bug answers with the request id; the details are in the log."""
    client = gateway()
    kafka.error = KafkaError(KafkaError._MSG_TIMED_OUT, "broker-7 secret detail")
    r = client.post("/v1/events/interaction", json=_interaction(), headers=AUTH)
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    request_id = r.json()["request_id"]
    assert r.headers["X-Request-ID"] == request_id
    assert "secret detail" not in r.text and "detail" not in r.json()
    assert any(request_id in m and "secret detail" in m for m in caplog.messages)

    kafka.error = None

    def boom(*_: Any, **__: Any) -> list[uuid.UUID]:
        raise RuntimeError("internal path /srv/aitl/x.py")

    kafka.publish_many = boom  # type: ignore[method-assign]
    r = client.post("/v1/events/interaction", json=_interaction(), headers=AUTH)
    assert r.status_code == 500 and "/srv/aitl" not in r.text
    assert any(r.json()["request_id"] in m for m in caplog.messages)
    r = client.post("/v1/events/interaction", json={"case_id": 1}, headers=AUTH)
    assert r.status_code == 400 and r.json()["request_id"] == r.headers["X-Request-ID"]
