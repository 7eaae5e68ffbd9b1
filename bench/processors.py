"""Processor speed: the judge pipeline (RuleJudge worker) vs a raw confluent-kafka
consume -> produce passthrough of the same events, and end-to-end latency at 1,000 events/s.

* ``judge_events_per_s``: a worker started on a backlog of the synthetic workload (contexts
  and annotations); input events / time between its first and last verdict.
* ``raw_passthrough_events_per_s``: the same source topics copied by a plain Python
  confluent-kafka consumer + producer (no decoding), measured in the same run.
* ``latency_ms``: annotations published at a steady 1,000 events/s to a running worker;
  verdict timestamp minus the annotation's produce time, p50 and p99.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from bench.workload import make_workload
from kernel.settings import KafkaSettings
from streams.admin import ensure_topics
from streams.catalog import Topics
from streams.config import consumer_config, producer_config
from streams.producer import Publisher
from streams.serde import AvroSerde

N_THROUGHPUT = 20_000  # annotations (plus their contexts) in the backlog
RATE = 1_000  # events/s for the latency run
LATENCY_S = 15
SETTLE_S = 8.0  # > the worker's AITL_PROCESSORS_SEAL_AGE_S below
ROOT = Path(__file__).resolve().parents[1]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _sources(topics: Topics) -> list[str]:
    return [topics.name("interactions"), topics.name("suggestions"), *topics.annotations]


def raw_passthrough(settings: KafkaSettings, n: int) -> float:
    """Events/s of consume -> produce of the raw bytes (no decoding, acks=all) into the
    same topics of a mirror namespace."""
    mirror = settings.model_copy(update={"topic_prefix": settings.topic_prefix + "raw."})
    ensure_topics(mirror)
    src, dst = Topics(settings), Topics(mirror)
    sink = {name: dst.name(src.spec(name).suffix) for name in _sources(src)}
    consumer = Consumer(consumer_config(settings, f"bench-raw-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe(_sources(Topics(settings)))
    producer = Producer(producer_config(settings))
    seen, started = 0, None
    deadline = time.monotonic() + 120
    while seen < n and time.monotonic() < deadline:
        for msg in consumer.consume(1000, 1.0):
            if msg.error() is not None:
                continue
            if started is None:
                started = time.perf_counter()
            while True:
                try:
                    producer.produce(sink[msg.topic() or ""], value=msg.value(), key=msg.key())
                    break
                except BufferError:
                    producer.poll(0.05)
            seen += 1
        producer.poll(0)
    producer.flush(60)
    consumer.commit(asynchronous=False)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return seen / elapsed if elapsed > 0 else 0.0


class VerdictWatch:
    """Reads the verdict topic: per annotation id, the first verdict's timestamp (ms)."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.serde = AvroSerde()
        self.consumer = Consumer(consumer_config(settings, f"bench-v-{uuid.uuid4().hex[:8]}"))
        self.consumer.subscribe([Topics(settings).name("judge.verdicts")])
        self.first: dict[uuid.UUID, int] = {}

    def poll(self, until: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.first) < until and time.monotonic() < deadline:
            for msg in self.consumer.consume(1000, 0.5):
                if msg.error() is None:
                    verdict: Any = self.serde.decode(msg.value())
                    self.first.setdefault(verdict.annotation_event_id, msg.timestamp()[1])

    def close(self) -> None:
        self.consumer.close()


def _worker(settings: KafkaSettings, tmp: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "AITL_KAFKA_BOOTSTRAP": settings.bootstrap or "",
        "AITL_KAFKA_TOPIC_PREFIX": settings.topic_prefix,
        "AITL_SHARD_STORE": str(tmp / "shards"),
        "AITL_DATA_DIR": str(tmp / "data"),
        "AITL_METRICS_PORT": "0",
        "AITL_PROCESSORS_SEAL_AGE_S": "5",
        "HF_HUB_OFFLINE": "1",
    }
    log = open(tmp / "worker.log", "wb")  # noqa: SIM115 - lives as long as the worker
    cmd = [sys.executable, "-m", "aitl.cli_processors", "start", "--loglevel", "WARNING"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def run(bootstrap: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="aitl-bench-processors-"))
    settings = KafkaSettings(bootstrap=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:6]}.")
    ensure_topics(settings)
    backlog = make_workload(N_THROUGHPUT, seed=11, late_share=0.0, orphan_share=0.0)
    with Publisher(settings, producer_name="bench") as pub:
        pub.publish_many(backlog.knowledge)
        pub.publish_many(backlog.stream)
    n_events = len(backlog.stream)
    raw = raw_passthrough(settings, n_events)

    watch = VerdictWatch(settings)
    worker = _worker(settings, tmp)
    try:
        watch.poll(len(backlog.expected), timeout_s=600)
        stamps = [watch.first[e] for e in backlog.expected if e in watch.first]
        if len(stamps) < len(backlog.expected):
            raise RuntimeError(f"only {len(stamps)} verdicts; see {tmp / 'worker.log'}")
        judge_rate = n_events / max(1e-3, (max(stamps) - min(stamps)) / 1000)

        time.sleep(SETTLE_S)  # the backlog's last shards seal: measure the steady state
        paced = make_workload(RATE * LATENCY_S * 3 // 4, seed=12, late_share=0.0, orphan_share=0.0)
        sent: dict[uuid.UUID, float] = {}
        step = RATE // 100  # 10 events every 10 ms, sleeping in between (no busy wait)
        with Publisher(settings, producer_name="bench") as pub:
            start = time.perf_counter()
            for i in range(0, len(paced.stream), step):
                delay = start + i / RATE - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                now_ms = time.time() * 1000
                batch = paced.stream[i : i + step]
                pub.publish_many(batch)
                pub.poll(0)
                sent.update((e.envelope.event_id, now_ms) for e in batch)
        watch.poll(len(backlog.expected) + len(paced.expected), timeout_s=300)
        latencies = [watch.first[e] - sent[e] for e in paced.expected if e in watch.first]
    finally:
        worker.terminate()
        worker.wait(60)
        watch.close()
    shutil.rmtree(tmp, ignore_errors=True)  # kept (with worker.log) when the run failed
    return {
        "judge_events_per_s": round(judge_rate, 1),
        "raw_passthrough_events_per_s": round(raw, 1),
        "judge_vs_raw_ratio": round(judge_rate / raw, 3) if raw else None,
        "latency_ms": {
            "p50": round(_percentile(latencies, 0.50), 1),
            "p99": round(_percentile(latencies, 0.99), 1),
        },
        "events": n_events,
        "annotations": len(backlog.expected),
        "latency_annotations": len(latencies),
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    print(run(sys.argv[1]))
