"""HTTP ingress of the serving application: ``/v1/suggest``, ``/healthz``, ``/metrics``.

Bearer-token auth as in the gateway (``AITL_API_TOKENS``, :class:`streams.edge.Access`;
``/healthz`` and ``/metrics`` stay open for probes and scrapers): the token's tenant is the
suggestion's, and a body naming another is a ``403``. The body must be
``application/json`` (``415``), at most ``max_body_bytes`` (``413``), within the query,
history and id caps of :class:`ServingSettings` (``400``); a suggestion that takes longer
than ``request_timeout_s`` is a ``504``. Errors carry a ``request_id`` (also
``X-Request-ID``) that finds the details in the replica's log, never exception text. The
suggestion-served event is produced and acknowledged before the answer goes out, so an
agent never sees a suggestion that its annotations could not be joined to.

No ``from __future__ import annotations`` here: FastAPI reads the route signatures
(``request: Request``) at runtime through Serve's class-based ingress.
"""

import asyncio
import logging
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
from kernel.settings import Principal, Settings
from serving.config import ServingSettings
from serving.records import Generated, GenerateRequest, Ranked, Retrieved
from streams.edge import Access, Refused, long_strings, parse_json, read_body, require_json
from streams.producer import Publisher

log = logging.getLogger(__name__)


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
    """The body of ``POST /v1/suggest``; the tenant is the token's (a ``tenant_id`` here
    may only repeat it)."""

    tenant_id: str | None = Field(default=None, min_length=1)
    case_id: str = Field(min_length=1)
    query: str = Field(min_length=1, description="the customer's latest message")
    history: list[TurnIn] = Field(default_factory=list, description="earlier turns, oldest first")


def _errors(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
        for e in exc.errors()
    ]


def _invalid(*errors: tuple[str, str]) -> Refused:
    return Refused(
        400, "invalid suggest request", errors=[{"field": f, "message": m} for f, m in errors]
    )


async def admit(
    request: Request, access: Access, cfg: ServingSettings
) -> tuple[Principal, SuggestRequest]:
    """Who asks and what, or :class:`Refused`: ``401`` without a valid token, ``415`` not
    JSON, ``413`` too large, ``400`` not JSON, too deep, invalid or over a cap, ``403`` a
    body naming a tenant the token does not stand for."""
    principal = access.authenticate(request.headers)
    if principal is None:
        raise Refused(401, "missing or invalid bearer token")
    require_json(request.headers)
    parsed = parse_json(await read_body(request, cfg.max_body_bytes), cfg.max_depth)
    too_long = long_strings(parsed, cfg.max_text_chars)
    if too_long:
        message = f"longer than {cfg.max_text_chars} characters"
        raise _invalid(*((p, message) for p in too_long))
    try:
        body = SuggestRequest.model_validate(parsed)
    except ValidationError as exc:
        raise Refused(400, "invalid suggest request", errors=_errors(exc)) from None
    if len(body.history) > cfg.max_history_turns:
        raise _invalid(("history", f"{len(body.history)} turns; at most {cfg.max_history_turns}"))
    if len(body.case_id) > cfg.max_id_chars:
        raise _invalid(("case_id", f"longer than {cfg.max_id_chars} characters"))
    if body.tenant_id not in (None, principal.tenant_id):
        raise Refused(403, "the request names a tenant this token does not stand for")
    return principal, body


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
        self.access = Access(settings, "serving ingress")
        self.access.warn_if_open()
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

    @api.post("/v1/suggest")
    async def suggest(self, request: Request) -> JSONResponse:
        started = time.perf_counter()
        # Serve's proxy gives each request an id (the client's X-Request-ID, or its own)
        # and puts it on the answer; outside Serve the ingress makes one and sets it
        given = request.headers.get("x-request-id")
        request_id = given[:100] if given else uuid.uuid4().hex
        headers = {} if given else {"X-Request-ID": request_id}
        try:
            principal, body = await admit(request, self.access, self.cfg)
        except Refused as refused:
            self.prom.requests.labels(str(refused.status)).inc()
            out = refused.body | {"request_id": request_id}
            return JSONResponse(out, status_code=refused.status, headers=headers)
        stage = "pipeline"
        try:
            async with asyncio.timeout(self.cfg.request_timeout_s):
                event, response = await self._pipeline(body, principal, started)
                stage = "publish"
                t = time.perf_counter()
                await self._publish(event)
            self.prom.stage_seconds.labels("publish").observe(time.perf_counter() - t)
        except Exception as exc:  # the text stays in the log, under the request id
            timed_out = isinstance(exc, TimeoutError)
            status = 504 if timed_out else 503 if stage == "publish" else 500
            log.error("suggest %s: %s failed", request_id, stage, exc_info=exc)
            self.prom.errors.labels(stage).inc()
            self.prom.requests.labels(str(status)).inc()
            error = f"{stage} {'timed out' if timed_out else 'failed'}; the log has it"
            return JSONResponse(
                {"error": error, "request_id": request_id}, status_code=status, headers=headers
            )
        total = time.perf_counter() - started
        self.prom.stage_seconds.labels("total").observe(total)
        self.prom.requests.labels("200").inc()
        return JSONResponse(response | {"latency_ms": total * 1000}, headers=headers)

    async def _pipeline(
        self, body: SuggestRequest, principal: Principal, started: float
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
            envelope=Envelope(tenant_id=principal.tenant_id, producer="aitl-serving"),
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
        except Exception:  # an open probe: the cause goes to the log, not the answer
            log.exception("healthz: a deployment did not answer")
            return JSONResponse({"status": "unavailable"}, status_code=503)
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
