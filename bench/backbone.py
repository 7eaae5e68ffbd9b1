"""Backbone speed: the SDK against a hand-written confluent-kafka + fastavro loop on the same
dicts (the fair peer) and raw produce of pre-encoded bytes (the limit), gateway events/s,
serde cost."""

from __future__ import annotations

import asyncio
import io
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import fastavro
import httpx
import uvicorn
from confluent_kafka import Producer

from aitl.kafka_local import free_port
from kernel import events as ev
from kernel.settings import KafkaSettings, Settings
from streams.admin import ensure_topics
from streams.catalog import Topics
from streams.config import producer_config
from streams.gateway import create_app
from streams.producer import Publisher
from streams.serde import SINGLE_OBJECT_MAGIC, AvroSerde
from tests.factories import as_json, samples

N_PRODUCE = 50_000
N_SERDE = 20_000


def _events(n: int) -> list[ev.CustomerInteraction]:
    return [
        ev.CustomerInteraction(case_id=f"case-{i % 500}", customer_message=f"My bill is wrong #{i}")
        for i in range(n)
    ]


def _records(events: list[ev.CustomerInteraction]) -> list[dict[str, Any]]:
    """The application's own dicts, as it holds them before any envelope is made."""
    out = []
    for e in events:
        record = e.to_avro()
        del record["envelope"]
        out.append(record)
    return out


def sdk_rate(settings: KafkaSettings, records: list[dict[str, Any]]) -> float:
    """Validate + envelope + encode + produce + delivery reports, on a connected client."""
    with Publisher(settings) as pub:
        pub.publish(records[0], "interaction")
        pub.flush(30)
        start = time.perf_counter()
        pub.publish_many(records, "interaction")
        pub.flush(60)
        return len(records) / (time.perf_counter() - start)


def handwritten_rate(settings: KafkaSettings, records: list[dict[str, Any]]) -> float:
    """The fair peer: what a user writes by hand on the same dicts with confluent-kafka and
    fastavro's schemaless writer (envelope, the same framing, delivery reports counted),
    with no validation beyond what the writer itself checks."""
    serde = AvroSerde()
    sv = serde.schemas[ev.CustomerInteraction.schema_name]
    topic = Topics(settings).for_event(ev.CustomerInteraction)
    producer = Producer(producer_config(settings))
    failed: list[object] = []

    def report(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(err)

    def send(record: dict[str, Any]) -> None:
        envelope = {
            "event_id": uuid.uuid4(),
            "event_time": datetime.now(UTC),
            "tenant_id": "default",
            "schema_version": sv.version,
            "producer": "by-hand",
        }
        buf = io.BytesIO()
        buf.write(SINGLE_OBJECT_MAGIC + sv.fingerprint)
        fastavro.schemaless_writer(buf, sv.parsed, {**record, "envelope": envelope})
        while True:
            try:
                producer.produce(
                    topic, value=buf.getvalue(), key=record["case_id"].encode(), on_delivery=report
                )
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)

    send(records[0])
    producer.flush(30)
    start = time.perf_counter()
    for record in records:
        send(record)
    producer.flush(60)
    if failed:
        raise RuntimeError(f"{len(failed)} hand-written deliveries failed: {failed[0]}")
    return len(records) / (time.perf_counter() - start)


def raw_rate(settings: KafkaSettings, events: list[ev.CustomerInteraction]) -> float:
    serde, topic = AvroSerde(), Topics(settings).for_event(ev.CustomerInteraction)
    encoded = [(e.key().encode(), serde.encode(e)) for e in events]  # the same bytes
    producer = Producer(producer_config(settings))
    producer.produce(topic, value=encoded[0][1], key=encoded[0][0])
    producer.flush(30)
    start = time.perf_counter()
    for key, value in encoded:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(60)
    return len(encoded) / (time.perf_counter() - start)


def serde_us() -> tuple[float, float]:
    serde = AvroSerde()
    event = samples()["suggestion"]
    start = time.perf_counter()
    for _ in range(N_SERDE):
        data = serde.encode(event)
    encode = (time.perf_counter() - start) / N_SERDE * 1e6
    start = time.perf_counter()
    for _ in range(N_SERDE):
        serde.decode(data)
    return encode, (time.perf_counter() - start) / N_SERDE * 1e6


def gateway_rates(settings: KafkaSettings, total: int = 20_000) -> dict[str, float]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(Settings(kafka=settings, auth="off")), port=port, log_level="error"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/v1/events/interaction"
    body = as_json(samples()["interaction"])

    async def drive(batch: int, requests: int, concurrency: int = 16) -> float:
        payload: Any = body if batch == 1 else [body] * batch
        async with httpx.AsyncClient(timeout=30) as client:
            queue = list(range(requests))

            async def worker() -> None:
                while queue:
                    queue.pop()
                    r = await client.post(url, json=payload)
                    r.raise_for_status()

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return requests * batch / (time.perf_counter() - start)

    try:
        return {
            "batch_1": asyncio.run(drive(1, total // 10)),
            "batch_100": asyncio.run(drive(100, total // 100)),
        }
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def run(bootstrap: str) -> dict[str, Any]:
    settings = KafkaSettings(bootstrap=bootstrap, topic_prefix=f"bench{int(time.time())}.")
    ensure_topics(settings)
    events = _events(N_PRODUCE)
    records = _records(events)
    raw_rate(settings, events[:5000])  # warm the connection and topic metadata
    raw, sdk, hand = [], [], []
    for _ in range(3):  # interleave, so drift in the shared machine hits all alike
        raw.append(raw_rate(settings, events))
        hand.append(handwritten_rate(settings, records))
        sdk.append(sdk_rate(settings, records))
    encode, decode = serde_us()
    return {
        "sdk_events_per_s": round(max(sdk)),
        "handwritten_events_per_s": round(max(hand)),
        "raw_events_per_s": round(max(raw)),
        "sdk_vs_handwritten_ratio": round(max(sdk) / max(hand), 3),
        "sdk_vs_raw_ratio": round(max(sdk) / max(raw), 3),
        "gateway_events_per_s": {k: round(v) for k, v in gateway_rates(settings).items()},
        "encode_us": round(encode, 2),
        "decode_us": round(decode, 2),
        "events": N_PRODUCE,
    }
