"""HTTP ingress of the serving application: ``/v1/suggest``, ``/healthz``, ``/metrics``.

Bearer-token auth as in the gateway (``AITL_API_TOKENS``; ``/healthz`` and ``/metrics``
stay open for probes and scrapers). The suggestion-served event is produced and
acknowledged before the answer goes out, so an agent never sees a suggestion that its
annotations could not be joined to.

No ``from __future__ import annotations`` here: FastAPI reads the route signatures
(``request: Request``) at runtime through Serve's class-based ingress.
"""

import asyncio
import hmac
import threading
import time
import uuid
from dataclasses import asdict
from typing import Any

from confluent_kafka import KafkaError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from pydantic import BaseModel, Field, ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle

from kernel.errors import DeliveryError, InfraError
from kernel.events import Candidate, Envelope, ScoredKnowledge, SuggestionServed
from kernel.prompt import retrieval_query
from kernel.settings import Settings
from serving.config import ServingSettings
from serving.records import Generated, GenerateRequest, Ranked, Retrieved
from streams.producer import Publisher


class ServingMetrics:
    """Per-replica Prometheus metrics on their own registry.

    Built in the replica (not at import): Serve ships the ingress class by value, so
    module-level collectors would be copies the replica's default registry never sees.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.stage_seconds = Histogram(
            "aitl_serving_stage_seconds",
            "Suggest latency per stage, as the ingress sees it",
            ["stage"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32),
            registry=self.registry,
        )
        self.requests = Counter(
            "aitl_serving_requests_total",
            "Suggest requests by status",
            ["status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "aitl_serving_errors_total",
            "Suggest failures by stage",
            ["stage"],
            registry=self.registry,
        )
        self.model_version = Gauge(
            "aitl_serving_model_version_info",
            "1 for the version each component serves",
            ["component", "version"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class TurnIn(BaseModel):
    speaker: str = Field(min_length=1, description="CUSTOMER/AGENT (or DSTC U/S)")
    text: str


class SuggestRequest(BaseModel):
    """The body of ``POST /v1/suggest``."""

    tenant_id: str = Field(default="default", min_length=1)
    case_id: str = Field(min_length=1)
    query: str = Field(min_length=1, description="the customer's latest message")
    history: list[TurnIn] = Field(default_factory=list, description="earlier turns, oldest first")


def _errors(exc: Exception) -> list[dict[str, str]]:
    if isinstance(exc, ValidationError):
        return [
            {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
            for e in exc.errors()
        ]
    return [{"field": "(body)", "message": "body is not valid JSON"}]


api = FastAPI(title="aitl serving", version="1")


@serve.deployment(name="Ingress", health_check_period_s=10)
@serve.ingress(api)
class Ingress:
    """Chains the three model deployments and publishes what it served."""

    def __init__(
        self,
        retriever: DeploymentHandle[Any],
        ranker: DeploymentHandle[Any],
        generator: DeploymentHandle[Any],
        settings: Settings,
        cfg: ServingSettings,
    ) -> None:
        self.retriever, self.ranker, self.generator = retriever, ranker, generator
        self.settings, self.cfg = settings, cfg
        self.tokens = settings.token_set()
        overrides: dict[str, Any] = {"message.timeout.ms": int(cfg.publish_timeout_s * 1000)}
        self.publisher = Publisher(
            settings.kafka, producer_name="aitl-serving", tenant_id=settings.tenant_id, **overrides
        )
        self._stop = threading.Event()
        threading.Thread(target=self._serve_callbacks, name="suggest-acks", daemon=True).start()
        self.versions: dict[str, str] = {}
        self.prom = ServingMetrics()

    def _serve_callbacks(self) -> None:
        while not self._stop.is_set():
            self.publisher.poll(0.05)

    def _authorized(self, request: Request) -> bool:
        if not self.tokens:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and any(
            hmac.compare_digest(token.encode(), t.encode()) for t in self.tokens
        )

    @api.post("/v1/suggest")
    async def suggest(self, request: Request) -> JSONResponse:
        started = time.perf_counter()
        if not self._authorized(request):
            self.prom.requests.labels("401").inc()
            return JSONResponse({"error": "missing or invalid bearer token"}, status_code=401)
        try:
            body = SuggestRequest.model_validate(await request.json())
        except (ValueError, ValidationError) as exc:
            self.prom.requests.labels("400").inc()
            return JSONResponse({"error": "invalid suggest request", "errors": _errors(exc)}, 400)
        stage = "retrieve"
        try:
            event, response = await self._pipeline(body, started)
            stage = "publish"
            t = time.perf_counter()
            await self._publish(event)
            self.prom.stage_seconds.labels("publish").observe(time.perf_counter() - t)
        except Exception as exc:
            self.prom.errors.labels(stage if stage == "publish" else "pipeline").inc()
            self.prom.requests.labels("503" if stage == "publish" else "500").inc()
            status = 503 if stage == "publish" else 500
            return JSONResponse({"error": f"{stage} failed: {exc}"}, status_code=status)
        total = time.perf_counter() - started
        self.prom.stage_seconds.labels("total").observe(total)
        self.prom.requests.labels("200").inc()
        return JSONResponse(response | {"latency_ms": total * 1000})

    async def _pipeline(
        self, body: SuggestRequest, started: float
    ) -> tuple[SuggestionServed, dict[str, Any]]:
        """Retrieve, rank, generate; the suggestion event and the response body."""
        history = [(t.speaker, t.text) for t in body.history]
        query = retrieval_query(body.query, history, self.cfg.query_turns)
        t = time.perf_counter()
        retrieved: Retrieved = await self.retriever.retrieve.remote(query, self.settings.retrieve_k)
        self.prom.stage_seconds.labels("retrieve").observe(time.perf_counter() - t)
        t = time.perf_counter()
        ranked: Ranked = await self.ranker.rank.remote(query, retrieved.hits, self.settings.rank_k)
        self.prom.stage_seconds.labels("rank").observe(time.perf_counter() - t)
        t = time.perf_counter()
        generated: Generated = await self.generator.generate.remote(
            GenerateRequest(body.query, history, ranked.ranked)
        )
        self.prom.stage_seconds.labels("generate").observe(time.perf_counter() - t)
        versions = {
            "retriever": retrieved.version,
            "ranker": ranked.version,
            "generator": generated.version,
        }
        self._record_versions(versions)
        request_id = str(uuid.uuid4())
        candidates = [
            Candidate(
                candidate_id=c.candidate_id,
                text=c.text,
                model_version=generated.version,
                cited_knowledge_ids=c.cited_knowledge_ids,
            )
            for c in generated.candidates
        ]
        event = SuggestionServed(
            envelope=Envelope(tenant_id=body.tenant_id, producer="aitl-serving"),
            request_id=request_id,
            case_id=body.case_id,
            query=query,
            retrieved=[
                ScoredKnowledge(knowledge_id=h.knowledge_id, score=h.score) for h in retrieved.hits
            ],
            ranked=[
                ScoredKnowledge(knowledge_id=h.knowledge_id, score=h.score) for h in ranked.ranked
            ],
            candidates=candidates,
            model_versions=versions,
            latency_ms=(time.perf_counter() - started) * 1000,
        )
        response = {
            "request_id": request_id,
            "case_id": body.case_id,
            "knowledge": [asdict(h) for h in ranked.ranked],
            "retrieved": [
                {"knowledge_id": h.knowledge_id, "score": h.score} for h in retrieved.hits
            ],
            "candidates": [c.model_dump() for c in candidates],
            "model_versions": versions,
            "stage_ms": {
                "retrieve": retrieved.ms,
                "rank": ranked.ms,
                "generate": generated.ms,
            },
        }
        return event, response

    async def _publish(self, event: SuggestionServed) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[KafkaError | None] = loop.create_future()

        def resolve(err: KafkaError | None) -> None:
            if not done.done():
                done.set_result(err)

        def delivered(_event_id: uuid.UUID, err: KafkaError | None) -> None:
            loop.call_soon_threadsafe(resolve, err)

        self.publisher.publish(event, on_delivery=delivered)
        err = await asyncio.wait_for(done, timeout=self.cfg.publish_timeout_s + 2)
        if err is not None:
            raise DeliveryError(f"Kafka did not acknowledge the suggestion event: {err}")

    def _record_versions(self, versions: dict[str, str]) -> None:
        for component, version in versions.items():
            old = self.versions.get(component)
            if old == version:
                continue
            if old is not None:
                self.prom.model_version.remove(component, old)
            self.prom.model_version.labels(component, version).set(1)
            self.versions[component] = version

    @api.get("/healthz")
    async def healthz(self) -> JSONResponse:
        try:
            parts = await asyncio.wait_for(
                asyncio.gather(
                    self.retriever.status.remote(),
                    self.ranker.status.remote(),
                    self.generator.status.remote(),
                ),
                timeout=30,
            )
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "error": str(exc)}, status_code=503)
        retriever, ranker, generator = parts
        # not ready before the retriever has read the knowledge topic to its end: a search
        # over a half-built index would answer, and answer worse
        ready = bool(retriever.get("caught_up", True)) or not self.cfg.index_knowledge
        return JSONResponse(
            {
                "status": "ok" if ready else "indexing",
                "model_versions": {
                    "retriever": retriever["version"],
                    "ranker": ranker["version"],
                    "generator": generator["version"],
                },
                "retriever": retriever,
                "ranker": ranker,
                "generator": generator,
            },
            status_code=200 if ready else 503,
        )

    @api.get("/metrics")
    async def metrics(self) -> Response:
        return Response(self.prom.render(), media_type=CONTENT_TYPE_LATEST)

    def check_health(self) -> None:
        if self.publisher.failed and self.publisher.delivered == 0:
            raise InfraError(f"Kafka unreachable: {self.publisher.failed[-1][1]}")

    def __del__(self) -> None:
        if hasattr(self, "_stop"):
            self._stop.set()
            self.publisher.flush(5)
