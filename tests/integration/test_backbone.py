"""The event backbone on the real broker: SDK, gateway, DLQ, and a broker restart."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from confluent_kafka import Producer

from aitl.kafka_local import LocalKafka, free_port
from kernel import events as ev
from kernel.settings import KafkaSettings, Settings
from streams.admin import ensure_topics
from streams.catalog import Topics
from streams.consumer import Decoded, EventConsumer
from streams.dlq_reader import read_dead_letters
from streams.gateway import create_app
from streams.producer import InvalidEvent, Publisher
from streams.serde import AvroSerde
from tests.factories import as_json, samples

N = 10_000


def interaction(case: int, seq: int) -> ev.CustomerInteraction:
    return ev.CustomerInteraction(case_id=f"case-{case}", customer_message=f"message {seq}")


def consume_all(
    settings: KafkaSettings, topics: list[str], expected: int, timeout_s: float = 90
) -> list[Decoded]:
    """Read until ``expected`` events arrived and nothing more comes for 2 s."""
    out: list[Decoded] = []
    deadline = time.monotonic() + timeout_s
    quiet_since: float | None = None
    with EventConsumer(settings, f"g-{uuid.uuid4().hex[:8]}", topics) as consumer:
        while time.monotonic() < deadline:
            batch = consumer.poll(1000, 0.5)
            out.extend(batch.events)
            if len(out) >= expected:
                quiet_since = quiet_since or time.monotonic()
                if batch.events:
                    quiet_since = time.monotonic()
                if time.monotonic() - quiet_since > 2:
                    break
    return out


def assert_once_in_order(events: list[Decoded], expected_ids: set[uuid.UUID]) -> None:
    ids = [d.event.envelope.event_id for d in events]
    assert len(ids) == len(set(ids)), "an event was consumed twice"
    assert set(ids) == expected_ids
    per_key: dict[bytes | None, list[int]] = defaultdict(list)
    for d in events:
        assert d.key == d.event.key().encode()
        if isinstance(d.event, ev.CustomerInteraction):
            per_key[d.key].append(int(d.event.customer_message.split()[-1]))
    for key, seqs in per_key.items():
        assert seqs == sorted(seqs), f"order broken for key {key!r}"


def test_sdk_publishes_10k_consumed_once_in_key_order(kafka_settings: KafkaSettings) -> None:
    ensure_topics(kafka_settings)
    topics = Topics(kafka_settings)
    batch = [interaction(i % 97, i) for i in range(N)]
    with Publisher(kafka_settings) as pub:
        ids = set(pub.publish_many(batch))
    assert pub.delivered == N and not pub.failed
    got = consume_all(kafka_settings, [topics.for_event(ev.CustomerInteraction)], N)
    assert_once_in_order(got, ids)


def test_every_event_type_reaches_its_topic(kafka_settings: KafkaSettings) -> None:
    ensure_topics(kafka_settings)
    topics = Topics(kafka_settings)
    sent = samples()
    with Publisher(kafka_settings) as pub:
        ids = {pub.publish(e): e for e in sent.values()}
    got = consume_all(kafka_settings, [name for name, spec in topics if spec.event], len(sent))
    assert {d.event.envelope.event_id for d in got} == set(ids)
    for d in got:
        assert d.topic == topics.for_event(d.event)
        assert d.event.envelope.producer == "aitl-sdk"


def test_a_consumer_is_at_the_end_only_after_reading_everything(
    kafka_settings: KafkaSettings,
) -> None:
    """An empty poll before the group is assigned is not "read to the end" (serving's
    readiness hangs on this: a half-built index must not look ready)."""
    ensure_topics(kafka_settings)
    topic = Topics(kafka_settings).for_event(ev.CustomerInteraction)
    with Publisher(kafka_settings) as pub:
        pub.publish_many([interaction(i, i) for i in range(300)])
    with EventConsumer(kafka_settings, f"g-{uuid.uuid4().hex[:8]}", [topic]) as consumer:
        assert not consumer.at_end(), "nothing assigned yet"
        seen, deadline = 0, time.monotonic() + 60
        while time.monotonic() < deadline:
            batch = consumer.poll(50, 0.5)
            seen += len(batch.events)
            if consumer.at_end():
                break
        assert consumer.at_end() and seen >= 300


def test_invalid_event_is_refused_before_produce(kafka_settings: KafkaSettings) -> None:
    good = as_json(samples()["preference"])
    bad = dict(good, preferred="C")
    with Publisher(kafka_settings) as pub, pytest.raises(InvalidEvent, match="preferred"):
        pub.publish_many([good, bad], "preference")
    assert pub.delivered == 0


@pytest.fixture
def gateway(kafka_settings: KafkaSettings) -> Iterator[Callable[..., str]]:
    """Starts real uvicorn gateways on free ports; returns their base URLs."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(kafka: KafkaSettings = kafka_settings, **settings: Any) -> str:
        port = free_port()
        settings = {"auth": "off"} | settings  # loopback, no tokens unless a test sets some
        app = create_app(Settings(kafka=kafka, **settings), ack_timeout_s=3.0)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def test_gateway_publishes_10k_in_batches_and_singles(
    kafka_settings: KafkaSettings, gateway: Callable[..., str]
) -> None:
    ensure_topics(kafka_settings)
    url = gateway()
    payloads = [as_json(interaction(i % 89, i)) for i in range(N)]
    ids: set[uuid.UUID] = set()
    with httpx.Client(base_url=url, timeout=30) as client:
        for start in range(0, N - 100, 100):
            r = client.post("/v1/events/interaction", json=payloads[start : start + 100])
            assert r.status_code == 202, r.text
            ids.update(uuid.UUID(i) for i in r.json()["event_ids"])
        for p in payloads[N - 100 :]:
            r = client.post("/v1/events/interaction", json=p)
            assert r.status_code == 202, r.text
            ids.update(uuid.UUID(i) for i in r.json()["event_ids"])
    assert len(ids) == N
    got = consume_all(kafka_settings, [Topics(kafka_settings).for_event(ev.CustomerInteraction)], N)
    assert_once_in_order(got, ids)
    for d in got[:10]:
        assert d.event.envelope.producer == "aitl-gateway"


def test_gateway_errors_are_clear(
    kafka_settings: KafkaSettings, gateway: Callable[..., str]
) -> None:
    ensure_topics(kafka_settings)
    url = gateway(api_tokens="s3cret,other")
    good = as_json(samples()["adoption"])
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.post("/v1/events/adoption", json=good).status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        r = client.post(
            "/v1/events/adoption", json=[good, dict(good, decision="NOPE")], headers=auth
        )
        assert r.status_code == 400
        errors = r.json()["errors"]
        assert errors == [{"index": 1, "field": "decision", "message": errors[0]["message"]}]
        assert "AS_IS" in errors[0]["message"]
        r = client.post("/v1/events/teleport", json=good, headers=auth)
        assert r.status_code == 400 and "known:" in r.json()["errors"][0]["message"]
        r = client.post("/v1/events/adoption", content=b"{not json", headers=auth)
        assert r.status_code == 415  # no Content-Type: application/json
        json_auth = auth | {"Content-Type": "application/json"}
        r = client.post("/v1/events/adoption", content=b"{not json", headers=json_auth)
        assert r.status_code == 400
        r = client.post("/v1/events/model", json=as_json(samples()["model"]), headers=auth)
        assert r.status_code == 403
        r = client.post("/v1/events/adoption", json=good, headers=auth)
        assert r.status_code == 202
        assert client.get("/metrics").text.count("aitl_gateway_requests_total") > 0


def test_a_retried_gateway_batch_is_published_once(
    kafka_settings: KafkaSettings, gateway: Callable[..., str]
) -> None:
    """A client that lost the answer retries the batch: by its Idempotency-Key, or by its
    own event ids; each event reaches the topic once, stamped with the token's tenant. A
    restarted gateway (its memory gone) gives the retry the same event ids, so what it
    publishes again is dropped downstream (example ids derive from event ids)."""
    ensure_topics(kafka_settings)
    url = gateway(api_tokens="tok-a:acme:crm")
    keyed = [as_json(interaction(i % 7, i)) for i in range(50)]
    own = [
        as_json(interaction(i % 7, 50 + i)) | {"envelope": {"event_id": str(uuid.uuid4())}}
        for i in range(10)
    ]
    auth = {"Authorization": "Bearer tok-a"}
    key = auth | {"Idempotency-Key": "batch-7"}
    ids: list[str] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for headers, batch in ((key, keyed), (auth, own)):
            first = client.post("/v1/events/interaction", json=batch, headers=headers)
            again = client.post("/v1/events/interaction", json=batch, headers=headers)
            assert first.status_code == again.status_code == 202, again.text
            assert first.json()["event_ids"] == again.json()["event_ids"]
            assert {r["status"] for r in again.json()["results"]} == {"duplicate"}
            ids += first.json()["event_ids"]
    restarted = gateway(api_tokens="tok-a:acme:crm")
    with httpx.Client(base_url=restarted, timeout=30) as client:
        r = client.post("/v1/events/interaction", json=keyed[:5], headers=key)
        assert r.json()["event_ids"] == ids[:5]
    topic = Topics(kafka_settings).for_event(ev.CustomerInteraction)
    got = consume_all(kafka_settings, [topic], len(ids) + 5)
    assert len(got) == len(ids) + 5  # the restarted gateway's 5 again, nothing else
    assert {str(d.event.envelope.event_id) for d in got} == set(ids)
    assert {(d.event.envelope.tenant_id, d.event.envelope.producer) for d in got} == {
        ("acme", "crm")
    }


def test_gateway_answers_503_when_kafka_is_down(gateway: Callable[..., str]) -> None:
    dead = KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}", topic_prefix="dead.")
    url = gateway(kafka=dead)
    with httpx.Client(base_url=url, timeout=30) as client:
        r = client.post("/v1/events/preference", json=as_json(samples()["preference"]))
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"


def test_garbage_and_invalid_go_to_dlq_and_valid_ones_after_are_processed(
    kafka_settings: KafkaSettings,
) -> None:
    ensure_topics(kafka_settings)
    topics = Topics(kafka_settings)
    topic = topics.for_event(ev.SuggestionServed)
    serde = AvroSerde()
    good = samples()["suggestion"]
    invalid = good.to_avro()
    invalid["candidates"] = invalid["candidates"][:1]
    raw = Producer({"bootstrap.servers": kafka_settings.bootstrap})
    raw.produce(topic, key=b"case-1", value=b"\xde\xad\xbe\xef garbage", headers=[("src", b"x")])
    raw.produce(topic, key=b"case-1", value=serde.encode_record("SuggestionServed", invalid))
    after = [good.model_copy(update={"request_id": f"after-{i}"}) for i in range(5)]
    for e in after:
        raw.produce(topic, key=b"case-1", value=serde.encode(e))
    assert raw.flush(10) == 0

    with EventConsumer(kafka_settings, f"g-{uuid.uuid4().hex[:8]}", [topic]) as consumer:
        seen: list[Decoded] = []
        deadline = time.monotonic() + 30
        while len(seen) < len(after) and time.monotonic() < deadline:
            seen.extend(consumer.poll(100, 0.5).events)
        consumer.commit()
        assert consumer.dead_lettered == 2
    assert [d.event.request_id for d in seen] == [e.request_id for e in after]

    letters = read_dead_letters(kafka_settings, limit=10)
    assert len(letters) == 2
    garbage, bad = sorted(letters, key=lambda d: d.offset)
    assert garbage.value == b"\xde\xad\xbe\xef garbage" and garbage.key == b"case-1"
    assert garbage.topic == topic and garbage.offset == 0 and garbage.stage == "decode"
    assert "unknown framing" in garbage.error and garbage.headers == [("src", b"x")]
    assert bad.offset == 1 and bad.stage == "validate" and "exactly two candidates" in bad.error


def test_broker_restart_loses_no_acknowledged_event(
    local_kafka_factory: Callable[..., LocalKafka],
) -> None:
    broker = local_kafka_factory()
    settings = KafkaSettings(bootstrap=broker.start(wait_s=120), topic_prefix="restart.")
    ensure_topics(settings)
    acked: set[uuid.UUID] = set()
    lock = threading.Lock()

    def on_delivery(event_id: uuid.UUID, err: Any) -> None:
        if err is None:
            with lock:
                acked.add(event_id)

    stop = threading.Event()
    pub = Publisher(settings, on_delivery=on_delivery)

    def publish() -> None:
        seq = 0
        while not stop.is_set():
            pub.publish(interaction(seq % 13, seq))
            seq += 1
            if seq % 50 == 0:
                time.sleep(0.01)

    def wait_for_acks(more_than: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while len(acked) <= more_than and time.monotonic() < deadline:
            time.sleep(0.2)

    thread = threading.Thread(target=publish)
    thread.start()
    wait_for_acks(500)
    broker.stop()
    before = len(acked)
    time.sleep(1)
    broker.start(wait_s=120)
    wait_for_acks(before + 500)
    stop.set()
    thread.join()
    assert pub.close(60) == 0
    assert before > 0 and len(acked) > before, "publishing did not resume after the restart"
    got = consume_all(settings, [Topics(settings).for_event(ev.CustomerInteraction)], len(acked))
    ids = {d.event.envelope.event_id for d in got}
    assert acked <= ids, f"{len(acked - ids)} acknowledged events lost"
    assert len(ids) == len(got), "an event was written twice (idempotence)"
