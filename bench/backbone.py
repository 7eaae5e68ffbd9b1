"""Backbone speed: SDK vs raw confluent-kafka produce, gateway events/s, serde cost."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

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
from streams.serde import AvroSerde
from tests.factories import as_json, samples

N_PRODUCE = 50_000
N_SERDE = 20_000


def _events(n: int) -> list[ev.CustomerInteraction]:
    return [
        ev.CustomerInteraction(case_id=f"case-{i % 500}", customer_message=f"My bill is wrong #{i}")
        for i in range(n)
    ]


def sdk_rate(settings: KafkaSettings, events: list[ev.CustomerInteraction]) -> float:
    """Validate + envelope + encode + produce + delivery reports, on a connected client."""
    with Publisher(settings) as pub:
        pub.publish(events[0])
        pub.flush(30)
        start = time.perf_counter()
        pub.publish_many(events)
        pub.flush(60)
        return len(events) / (time.perf_counter() - start)


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
    raw_rate(settings, events[:5000])  # warm the connection and topic metadata
    raw, sdk = [], []
    for _ in range(2):  # interleave, so drift in the shared machine hits both alike
        raw.append(raw_rate(settings, events))
        sdk.append(sdk_rate(settings, events))
    encode, decode = serde_us()
    return {
        "sdk_events_per_s": round(max(sdk)),
        "raw_events_per_s": round(max(raw)),
        "sdk_vs_raw_ratio": round(max(sdk) / max(raw), 3),
        "gateway_events_per_s": {k: round(v) for k, v in gateway_rates(settings).items()},
        "encode_us": round(encode, 2),
        "decode_us": round(decode, 2),
        "events": N_PRODUCE,
    }
