"""Serving benchmark: retrieval quality of the stock models and the live app's latency.

Quality: stock retriever + stock ranker on the DSTC11 hotel data (``../shared/data/
dstc11-hotel``; the demo dataset when it is absent, and ``dataset`` says which), all
cases, query = the last 3 turns. Latency: the Ray Serve app started locally with that
knowledge base published on the knowledge topic; retrieval-only calls through the
Retriever's handle, full ``/suggest`` over HTTP at concurrency 1 and 8. Generator
tokens/s counts both candidates' new tokens over decode wall time at concurrency 1.
Knowledge at scale (``retrieval_by_size``, synthetic KBs per engine) and hybrid vs dense
retrieval (``hybrid``) come from :mod:`bench.knowledge`.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from aitl.kafka_local import free_port
from bench import knowledge
from kernel.settings import KafkaSettings, Settings
from serving.knowledge.dataset import Dataset, load_dstc

HOTEL = Path(__file__).resolve().parents[2] / "shared" / "data" / "dstc11-hotel"
APP = "aitl-bench"
N_RETRIEVE = 100
N_SUGGEST_C1 = 12
N_SUGGEST_C8 = 24


def _dataset(tmp: Path) -> Dataset:
    if (HOTEL / "knowledge.json").exists():
        return load_dstc(HOTEL)
    from serving.knowledge.demo_data import generate_demo

    return load_dstc(generate_demo(tmp / "demo"))


def _pct(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 2), "p99": round(p99, 2)}


def quality(dataset: Dataset, settings: Settings, ranker_kind: str = "none") -> dict[str, float]:
    """Recall@75 / Recall@8 / Precision@8 of the stock retriever and ranker."""
    from kernel.checkpoints import ModelSpec
    from kernel.rankers import load_ranker
    from serving.offline import evaluate_retrieval
    from serving.retriever import load_encoder

    encoder = load_encoder(ModelSpec(), settings.retriever_model)
    ranker = load_ranker(ModelSpec(), stock_kind=ranker_kind)
    return evaluate_retrieval(
        dataset.knowledge, dataset.cases, encoder, ranker, settings.retrieve_k, settings.rank_k
    )


def _body(dataset: Dataset, n: int) -> dict[str, Any]:
    case = dataset.cases[n % len(dataset.cases)]
    return {
        "case_id": f"bench-{n}",
        "query": case.history[-1][1],
        "history": [{"speaker": s, "text": t} for s, t in case.history[:-1]],
    }


def _suggest_rps(url: str, dataset: Dataset, clients: int, total: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(total))

    def client() -> None:
        with httpx.Client(timeout=600) as http:
            for n in counter:
                t = time.perf_counter()
                r = http.post(f"{url}/v1/suggest", json=_body(dataset, n))
                with lock:
                    if r.status_code == 200:
                        latencies.append((time.perf_counter() - t) * 1000)
                    else:
                        errors.append(r.text[:200])

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} suggest requests failed: {errors[0]}")
    return total / (time.perf_counter() - started), latencies


def run(bootstrap: str) -> dict[str, Any]:
    """Measure and return the JSON-able results (keys as in the serving issue)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray
    from ray import serve

    from serving.app import start
    from serving.config import ServingSettings
    from serving.knowledge.indexer import knowledge_events
    from streams.admin import ensure_topics
    from streams.producer import Publisher

    with tempfile.TemporaryDirectory(prefix="aitl-bench-serving-") as tmp:
        dataset = _dataset(Path(tmp))
        kafka = KafkaSettings(bootstrap=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:8]}.")
        settings = Settings(kafka=kafka, qdrant_path=Path(":memory:"), auth="off")
        cfg = ServingSettings(port=free_port(), app_name=APP)
        metrics = quality(dataset, settings, cfg.ranker_kind)
        hybrid = knowledge.hybrid(dataset, settings.retriever_model)
        by_size = knowledge.retrieval_by_size(knowledge.SIZES)

        ensure_topics(kafka)
        with Publisher(kafka, producer_name="bench") as pub:
            pub.publish_many(knowledge_events(dataset.knowledge))
        start(settings, cfg)
        url = f"http://{cfg.host}:{cfg.port}"
        try:
            retriever = serve.get_deployment_handle("Retriever", app_name=APP)
            generator = serve.get_deployment_handle("Generator", app_name=APP)
            deadline = time.monotonic() + 900
            while retriever.status.remote().result()["objects"] < len(dataset.knowledge):
                if time.monotonic() > deadline:
                    raise TimeoutError("the knowledge base was not indexed in 15 minutes")
                time.sleep(2)
            retrieval = []
            for n in range(N_RETRIEVE):
                query = dataset.cases[n % len(dataset.cases)].query
                t = time.perf_counter()
                retriever.retrieve.remote(query, settings.retrieve_k).result()
                retrieval.append((time.perf_counter() - t) * 1000)
            _suggest_rps(url, dataset, 1, 2)  # warm-up
            before = generator.status.remote().result()
            rps_c1, latencies = _suggest_rps(url, dataset, 1, N_SUGGEST_C1)
            after = generator.status.remote().result()
            rps_c8, _ = _suggest_rps(url, dataset, 8, N_SUGGEST_C8)
        finally:
            serve.shutdown()
            ray.shutdown()
    tokens = after["generated_tokens"] - before["generated_tokens"]
    seconds = after["generation_seconds"] - before["generation_seconds"]
    return {
        "retrieval_ms": _pct(retrieval),
        "suggest_ms": _pct(latencies),
        "suggest_rps": {"c1": round(rps_c1, 3), "c8": round(rps_c8, 3)},
        "generator_tokens_per_s": round(tokens / seconds, 1) if seconds else 0.0,
        "recall_at_75": round(metrics[f"recall_at_{settings.retrieve_k}"], 4),
        "recall_at_8": round(metrics[f"recall_at_{settings.rank_k}"], 4),
        "precision_at_8": round(metrics[f"precision_at_{settings.rank_k}"], 4),
        "dataset": dataset.name,
        "cases": int(metrics["cases"]),
        "knowledge_objects": len(dataset.knowledge),
        "ranker_kind": cfg.ranker_kind,
        "max_new_tokens": cfg.max_new_tokens,
        "knowledge_engine": cfg.knowledge_engine,
        "retrieval_by_size": by_size,
        "hybrid": hybrid,
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(sys.argv[1]), indent=2))
