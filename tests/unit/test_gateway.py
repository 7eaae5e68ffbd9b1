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

from kernel.errors import SecurityError
from kernel.events import ANNOTATIONS, EVENT_TYPES, Event
from kernel.settings import KafkaSettings, Settings
from streams.gateway import PUBLISHABLE, create_app
from streams.producer import DeliveryCallback, Publisher
from tests.factories import as_json, samples

TOKEN = "tok-gw-1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
INTERNAL = ("model", "knowledge", "judge-verdict", "shard-sealed")


class FakeKafka(Publisher):
    """The real validation, envelope and encoding; the produce is recorded (topic, and the
    decoded event) and acknowledged at once, or refused with ``error``, or with
    ``fail_calls`` (the 0-based produce calls to refuse)."""

    def __init__(self) -> None:
        super().__init__(KafkaSettings(), producer_name="aitl-gateway")
        self.sent: list[str] = []
        self.events: list[Event] = []
        self.error: KafkaError | None = None
        self.fail_calls: set[int] = set()

    def _produce(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        event_id: uuid.UUID,
        on_delivery: DeliveryCallback | None,
    ) -> None:
        call = len(self.sent)
        self.sent.append(topic)
        self.events.append(self.serde.decode(value))
        error = KafkaError(KafkaError._MSG_TIMED_OUT) if call in self.fail_calls else self.error
        if on_delivery is not None:
            on_delivery(event_id, error)


@pytest.fixture
def kafka() -> FakeKafka:
    return FakeKafka()


@pytest.fixture
def gateway(kafka: FakeKafka) -> Iterator[Callable[..., TestClient]]:
    """A started gateway (with tokens) around the fake Kafka; settings can be overridden."""
    clients: list[TestClient] = []

    def start(**overrides: Any) -> TestClient:
        settings = Settings(**({"api_tokens": TOKEN} | overrides))
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


# -- tenants ---------------------------------------------------------------------------
TENANTS = "tok-a:acme:crm-a, tok-b:globex"


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_token_stamps_its_tenant_and_producer_and_another_tenant_is_a_403(
    gateway: Callable[..., TestClient], kafka: FakeKafka
) -> None:
    """The tenant comes from the token, never from the body: a client cannot write into
    another tenant's data, nor pass as another producer."""
    client = gateway(api_tokens=TENANTS)
    assert client.post(
        "/v1/events/interaction", json=_interaction(), headers=_as("tok-a")
    ).is_success
    assert client.post(
        "/v1/events/interaction", json=_interaction(), headers=_as("tok-b")
    ).is_success
    claims = _interaction() | {"envelope": {"tenant_id": "acme", "producer": "spoofed"}}
    r = client.post("/v1/events/interaction", json=claims, headers=_as("tok-a"))
    assert r.status_code == 202, r.text
    stamped = [(e.envelope.tenant_id, e.envelope.producer) for e in kafka.events]
    assert stamped == [("acme", "crm-a"), ("globex", "aitl-gateway"), ("acme", "crm-a")]

    foreign = [_interaction(2), _interaction(3) | {"envelope": {"tenant_id": "acme"}}]
    r = client.post("/v1/events/interaction", json=foreign, headers=_as("tok-b"))
    assert r.status_code == 403 and r.json()["items"] == [1]
    assert len(kafka.sent) == 3  # nothing of the batch was produced
    assert (
        client.post("/v1/events/interaction", json=_interaction(), headers=AUTH).status_code == 401
    )


def test_a_token_without_a_tenant_stands_for_the_default_one(
    gateway: Callable[..., TestClient], kafka: FakeKafka, tmp_path: Any
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# token:tenant[:producer]\nfile-tok:initech:ivr\n\nbare-tok\n")
    client = gateway(api_tokens=TOKEN, api_token_file=tokens)
    for token in (TOKEN, "file-tok", "bare-tok"):
        r = client.post("/v1/events/interaction", json=_interaction(), headers=_as(token))
        assert r.status_code == 202, r.text
    stamped = [(e.envelope.tenant_id, e.envelope.producer) for e in kafka.events]
    assert stamped == [
        ("default", "aitl-gateway"),
        ("initech", "ivr"),
        ("default", "aitl-gateway"),
    ]


# -- secure by default -----------------------------------------------------------------
def test_without_tokens_the_gateway_refuses_to_start_unless_auth_is_off(
    gateway: Callable[..., TestClient], kafka: FakeKafka, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(SecurityError, match="AITL_API_TOKENS"):
        create_app(Settings(), publisher=kafka)
    with pytest.raises(SecurityError):
        create_app(Settings(api_tokens=" , "), publisher=kafka)  # no token in it
    caplog.set_level("WARNING")
    client = gateway(api_tokens=None, auth="off")
    r = client.post("/v1/events/interaction", json=_interaction())
    assert r.status_code == 202 and kafka.events[0].envelope.tenant_id == "default"
    with TestClient(create_app(Settings(auth="off"), publisher=FakeKafka())):
        pass  # a second start warns again
    warnings = [m for m in caplog.messages if "AITL_AUTH=off" in m]
    assert len(warnings) == 2
    app = create_app(Settings(auth="off"), publisher=kafka)
    assert app.state.access.bind_host("0.0.0.0") == "127.0.0.1"
    secured = create_app(Settings(api_tokens=TOKEN, auth="off"), publisher=kafka)
    assert secured.state.access.bind_host("0.0.0.0") == "0.0.0.0"  # tokens: auth stays on


# -- idempotent publishing -------------------------------------------------------------
def test_a_retried_batch_with_client_event_ids_is_not_published_again(
    gateway: Callable[..., TestClient], kafka: FakeKafka
) -> None:
    client = gateway()
    ids = [str(uuid.uuid4()) for _ in range(3)]
    batch = [_interaction(i) | {"envelope": {"event_id": ids[i]}} for i in range(3)]
    first = client.post("/v1/events/interaction", json=batch, headers=AUTH)
    again = client.post("/v1/events/interaction", json=batch, headers=AUTH)
    assert first.json()["event_ids"] == again.json()["event_ids"] == ids
    assert [r["status"] for r in first.json()["results"]] == ["accepted"] * 3
    assert [r["status"] for r in again.json()["results"]] == ["duplicate"] * 3
    assert len(kafka.sent) == 3


def test_an_idempotency_key_fixes_the_ids_of_a_batch_per_tenant(
    gateway: Callable[..., TestClient], kafka: FakeKafka
) -> None:
    client = gateway(api_tokens=TENANTS)
    batch = [_interaction(i) for i in range(2)]
    key = {"Idempotency-Key": "order-42"}
    first = client.post("/v1/events/interaction", json=batch, headers=_as("tok-a") | key)
    again = client.post("/v1/events/interaction", json=batch, headers=_as("tok-a") | key)
    assert first.status_code == again.status_code == 202
    assert first.json()["event_ids"] == again.json()["event_ids"]
    assert len(kafka.sent) == 2
    other = client.post("/v1/events/interaction", json=batch, headers=_as("tok-b") | key)
    assert set(other.json()["event_ids"]).isdisjoint(first.json()["event_ids"])
    assert len(kafka.sent) == 4
    fresh = client.post("/v1/events/interaction", json=batch, headers=_as("tok-a"))
    assert set(fresh.json()["event_ids"]).isdisjoint(first.json()["event_ids"])  # no key
    empty = _as("tok-a") | {"Idempotency-Key": ""}
    r = client.post("/v1/events/interaction", json=batch, headers=empty)
    assert r.status_code == 400 and "Idempotency-Key" in r.json()["error"]


def test_a_503_lists_what_was_accepted_and_the_retry_publishes_only_the_rest(
    gateway: Callable[..., TestClient], kafka: FakeKafka
) -> None:
    client = gateway()
    batch = [_interaction(i) for i in range(3)]
    headers = AUTH | {"Idempotency-Key": "retry-me"}
    kafka.fail_calls = {1}
    r = client.post("/v1/events/interaction", json=batch, headers=headers)
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    results = r.json()["results"]
    assert [(x["index"], x["status"]) for x in results] == [
        (0, "accepted"),
        (1, "failed"),
        (2, "accepted"),
    ]
    r = client.post("/v1/events/interaction", json=batch, headers=headers)
    assert r.status_code == 202, r.text
    assert [x["status"] for x in r.json()["results"]] == ["duplicate", "accepted", "duplicate"]
    assert r.json()["event_ids"] == [x["event_id"] for x in results]
    produced = [str(e.envelope.event_id) for e in kafka.events]
    assert len(produced) == 4 and produced[3] == results[1]["event_id"]


# -- limits ----------------------------------------------------------------------------
def test_a_field_over_the_length_limit_is_a_400_naming_it(
    gateway: Callable[..., TestClient], kafka: FakeKafka
) -> None:
    client = gateway(gateway_max_field_chars=100)
    ok = _interaction() | {"customer_message": "x" * 100}
    long = _interaction() | {"customer_message": "x" * 101}
    r = client.post("/v1/events/interaction", json=[ok, long], headers=AUTH)
    assert r.status_code == 400, r.text
    assert r.json()["errors"] == [
        {"index": 1, "field": "customer_message", "message": "longer than 100 characters"}
    ]
    assert kafka.sent == []
    assert client.post("/v1/events/interaction", json=ok, headers=AUTH).status_code == 202
