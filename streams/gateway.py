"""HTTP gateway for platforms that push webhooks instead of using the SDK.

``POST /v1/events/{type}`` takes one JSON event or a list, validates every one, produces
them and answers ``202 {"event_ids": [...]}`` once the cluster acknowledged them all.
Invalid input gets ``400`` with field errors and nothing is produced; if Kafka does not
acknowledge in time the answer is ``503`` (the client retries; ids make retries safe).

Clients publish only the types whose class says ``client_publishable`` (interactions,
suggestions, every annotation type); the others (``model``, ``knowledge``,
``judge-verdict``, ``shard-sealed``) steer the system and get ``403``. Metric labels name
a known type only, so a client cannot grow the number of series.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from confluent_kafka import KafkaError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from kernel.errors import SecurityError
from kernel.events import EVENT_TYPES
from kernel.settings import Settings
from streams.producer import InvalidEvent, Publisher

log = logging.getLogger(__name__)

REQUESTS = Counter("aitl_gateway_requests_total", "Gateway requests", ["event_type", "status"])
EVENTS = Counter("aitl_gateway_events_total", "Events accepted by the gateway", ["event_type"])
LATENCY = Histogram(
    "aitl_gateway_request_seconds",
    "Gateway request latency, validation to acknowledgement",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# what a client may publish, declared on the event classes (a new annotation type is in)
PUBLISHABLE = frozenset(t for t, cls in EVENT_TYPES.items() if cls.client_publishable)
UNKNOWN = "unknown"  # the metric label of a type not in EVENT_TYPES
UNAUTHORIZED = "unauthorized"  # the label of a 401: an unauthenticated URL labels nothing


class _Poller:
    """Serves the producer's delivery callbacks from a background thread."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-poller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.publisher.poll(0.05)
            except SecurityError as exc:  # wrong credentials: requests will get 503
                log.error("gateway cannot publish: %s", exc)
                self._stop.wait(5)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.publisher.close(10)


def _resolve(fut: asyncio.Future[KafkaError | None], err: KafkaError | None) -> None:
    if not fut.done():
        fut.set_result(err)


def create_app(
    settings: Settings, *, ack_timeout_s: float = 10.0, publisher: Publisher | None = None
) -> FastAPI:
    """The gateway application; ``ack_timeout_s`` bounds the wait for Kafka. A given
    ``publisher`` (tests) replaces the one built from ``settings``; it is closed on exit."""
    tokens = settings.token_set()
    state: dict[str, Any] = {}
    lifespan = _lifespan(settings, ack_timeout_s, state, publisher)
    app = FastAPI(title="aitl gateway", version="1", lifespan=lifespan)

    @app.post("/v1/events/{event_type}")
    async def publish(event_type: str, request: Request) -> JSONResponse:
        started = time.perf_counter()
        if not _authorized(tokens, request):
            REQUESTS.labels(UNAUTHORIZED, "401").inc()
            return JSONResponse({"error": "missing or invalid bearer token"}, status_code=401)
        if event_type in EVENT_TYPES and event_type not in PUBLISHABLE:
            REQUESTS.labels(event_type, "403").inc()
            return JSONResponse(
                {
                    "error": f"{event_type} events are internal: clients may not publish them",
                    "publishable": sorted(PUBLISHABLE),
                },
                status_code=403,
            )
        items = await _read_items(event_type, request)
        if isinstance(items, JSONResponse):
            return items
        publisher: Publisher = state["publisher"]
        invalid = _validate(publisher, items, event_type)
        if invalid is not None:
            return invalid
        ids, failures = await _produce(publisher, items, event_type, ack_timeout_s)
        if failures:
            REQUESTS.labels(_label(event_type), "503").inc()
            return JSONResponse(
                {
                    "error": "Kafka did not acknowledge the events; retry",
                    "detail": str(failures[0]),
                },
                status_code=503,
                headers={"Retry-After": "5"},
            )
        REQUESTS.labels(_label(event_type), "202").inc()
        EVENTS.labels(_label(event_type)).inc(len(ids))
        LATENCY.observe(time.perf_counter() - started)
        return JSONResponse({"event_ids": [str(i) for i in ids]}, status_code=202)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def _lifespan(
    settings: Settings, ack_timeout_s: float, state: dict[str, Any], given: Publisher | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: one publisher (and its delivery poller) for all requests, its
    message timeout the ack timeout so Kafka gives up before the client does."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        overrides: dict[str, Any] = {"message.timeout.ms": int(ack_timeout_s * 1000)}
        publisher = given or Publisher(
            settings.kafka, producer_name="aitl-gateway", tenant_id=settings.tenant_id, **overrides
        )
        state["publisher"] = publisher
        state["poller"] = _Poller(publisher)
        yield
        state["poller"].close()

    return lifespan


def _label(event_type: str) -> str:
    """The metric label of the URL's type: the type if known, else ``unknown``."""
    return event_type if event_type in EVENT_TYPES else UNKNOWN


def _authorized(tokens: frozenset[str], request: Request) -> bool:
    """Whether the request carries one of the bearer tokens (always, when auth is off);
    compared in constant time so a token cannot be guessed byte by byte."""
    if not tokens:
        return True
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and any(
        hmac.compare_digest(token.encode(), t.encode()) for t in tokens
    )


async def _read_items(event_type: str, request: Request) -> list[Any] | JSONResponse:
    """The body as a list of JSON objects (one object counts as a list of one), or the
    ``400`` answer when it is not JSON or not objects."""
    try:
        body = await request.json()
    except ValueError:
        REQUESTS.labels(_label(event_type), "400").inc()
        return JSONResponse({"error": "body is not valid JSON"}, status_code=400)
    items = body if isinstance(body, list) else [body]
    if not items or not all(isinstance(i, dict) for i in items):
        REQUESTS.labels(_label(event_type), "400").inc()
        return JSONResponse(
            {"error": "body must be a JSON object or a non-empty list of objects"},
            status_code=400,
        )
    return items


def _validate(publisher: Publisher, items: list[Any], event_type: str) -> JSONResponse | None:
    """The ``400`` answer listing every field error of every item, or None when all are
    valid: a batch with one bad event produces nothing."""
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            publisher.prepare(item, event_type)
        except InvalidEvent as exc:
            errors.extend({"index": index, "field": f, "message": m} for f, m in exc.errors.items())
    if errors:
        REQUESTS.labels(_label(event_type), "400").inc()
        return JSONResponse({"error": f"invalid {event_type} event", "errors": errors}, 400)
    return None


async def _produce(
    publisher: Publisher, items: list[Any], event_type: str, ack_timeout_s: float
) -> tuple[list[uuid.UUID], list[KafkaError]]:
    """Produce the items and wait for the cluster's acknowledgements: the event ids and
    the delivery failures (a timeout counts as one), so the client knows to retry."""
    loop = asyncio.get_running_loop()
    pending: dict[uuid.UUID, asyncio.Future[KafkaError | None]] = {}

    def delivered(event_id: uuid.UUID, err: KafkaError | None) -> None:
        fut = pending.get(event_id)
        if fut is not None:
            loop.call_soon_threadsafe(_resolve, fut, err)

    # futures are registered before produce so no report can arrive unseen
    prepared = [publisher.prepare(item, event_type) for item in items]
    for event in prepared:
        pending[event.envelope.event_id] = loop.create_future()
    ids = publisher.publish_many(prepared, on_delivery=delivered)
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*pending.values()), timeout=ack_timeout_s + 2
        )
    except TimeoutError:
        results = [KafkaError(KafkaError._MSG_TIMED_OUT)]
    return ids, [r for r in results if r is not None]
