"""HTTP gateway for platforms that push webhooks instead of using the SDK.

``POST /v1/events/{type}`` takes one JSON event or a list, validates every one, produces
them and answers ``202 {"event_ids": [...], "results": [...]}`` once the cluster
acknowledged them all. Invalid input gets ``400`` with field errors and nothing is
produced; if Kafka does not acknowledge in time the answer is ``503`` whose ``results``
say which items were accepted, so the client retries the batch and only the rest is
published (a client ``envelope.event_id`` or an ``Idempotency-Key`` header fixes the ids;
:mod:`streams.idempotency`).

A bearer token stands for a tenant and a producer: the gateway stamps both into every
envelope, and a body that names another tenant is a ``403``. Clients publish only the
types whose class says ``client_publishable`` (interactions, suggestions, every
annotation type); the others (``model``, ``knowledge``, ``judge-verdict``,
``shard-sealed``) steer the system and get ``403``. The body must be ``application/json``
(``415``), at most ``gateway_max_body_bytes`` (``413``), at most ``gateway_max_batch``
events (``413``), nested at most ``gateway_max_depth`` deep (``400``), no string longer
than ``gateway_max_field_chars`` (``400``). Every answer carries an ``X-Request-ID``; an
error's details go to the log under it, never into the answer. Metric labels name a known
type only, so clients cannot grow the series.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from kernel.errors import SecurityError
from kernel.events import EVENT_TYPES, Event
from kernel.settings import Principal, Settings
from streams.edge import Access, Refused, long_strings, parse_json, read_body, require_json
from streams.idempotency import MAX_KEY_CHARS, RecentIds, derived_event_id
from streams.producer import InvalidEvent, Publisher

log = logging.getLogger(__name__)

REQUESTS = Counter("aitl_gateway_requests_total", "Gateway requests", ["event_type", "status"])
EVENTS = Counter("aitl_gateway_events_total", "Events accepted by the gateway", ["event_type"])
DUPLICATES = Counter(
    "aitl_gateway_duplicates_total", "Retried events already accepted, not published again"
)
LATENCY = Histogram(
    "aitl_gateway_request_seconds",
    "Gateway request latency, validation to acknowledgement",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# what a client may publish, declared on the event classes (a new annotation type is in)
PUBLISHABLE = frozenset(t for t, cls in EVENT_TYPES.items() if cls.client_publishable)
UNKNOWN = "unknown"  # the metric label of a type not in EVENT_TYPES
UNAUTHORIZED = "unauthorized"  # the label of a 401: an unauthenticated URL labels nothing
PRODUCER = "aitl-gateway"  # the envelope's producer when the token names none
ACCEPTED, DUPLICATE, FAILED = "accepted", "duplicate", "failed"


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


@dataclass(frozen=True)
class _Limits:
    body_bytes: int
    batch: int
    depth: int
    field_chars: int


def create_app(
    settings: Settings, *, ack_timeout_s: float = 10.0, publisher: Publisher | None = None
) -> FastAPI:
    """The gateway application; ``ack_timeout_s`` bounds the wait for Kafka. A given
    ``publisher`` (tests) replaces the one built from ``settings``; it is closed on exit.
    Raises :class:`SecurityError` without tokens unless ``settings.auth`` is ``off``."""
    access = Access(settings, "gateway")
    limits = _Limits(
        settings.gateway_max_body_bytes,
        settings.gateway_max_batch,
        settings.gateway_max_depth,
        settings.gateway_max_field_chars,
    )
    recent = RecentIds(settings.gateway_idempotency_cache)
    state: dict[str, Any] = {}
    lifespan = _lifespan(settings, access, ack_timeout_s, state, publisher)
    app = FastAPI(title="aitl gateway", version="1", lifespan=lifespan)

    @app.post("/v1/events/{event_type}")
    async def publish(event_type: str, request: Request) -> JSONResponse:
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        label = _label(event_type)
        try:
            principal = access.authenticate(request.headers)
            if principal is None:
                label = UNAUTHORIZED
                raise Refused(401, "missing or invalid bearer token")
            _admit(event_type, request)
            key = _idempotency_key(request)
            items = _parse(await read_body(request, limits.body_bytes), limits)
            publisher: Publisher = state["publisher"]
            events = _validate(publisher, items, event_type, principal, key)
            results = await _produce(publisher, events, recent, ack_timeout_s, request_id)
        except Refused as refused:
            REQUESTS.labels(label, str(refused.status)).inc()
            body_out = {**refused.body, "request_id": request_id}
            return _answer(refused.status, body_out, request_id, refused.headers)
        except Exception:  # the text stays in the log: answers never carry exception text
            log.exception("gateway request %s failed", request_id)
            REQUESTS.labels(label, "500").inc()
            error = "internal error; the gateway log has it under the request id"
            return _answer(500, {"error": error, "request_id": request_id}, request_id)
        REQUESTS.labels(label, "202").inc()
        EVENTS.labels(label).inc(sum(r["status"] == ACCEPTED for r in results))
        LATENCY.observe(time.perf_counter() - started)
        ids = [r["event_id"] for r in results]
        return _answer(202, {"event_ids": ids, "results": results}, request_id)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.state.access = access
    return app


def _lifespan(
    settings: Settings,
    access: Access,
    ack_timeout_s: float,
    state: dict[str, Any],
    given: Publisher | None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: one publisher (and its delivery poller) for all requests, its
    message timeout the ack timeout so Kafka gives up before the client does."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        access.warn_if_open()
        overrides: dict[str, Any] = {"message.timeout.ms": int(ack_timeout_s * 1000)}
        publisher = given or Publisher(
            settings.kafka, producer_name=PRODUCER, tenant_id=settings.tenant_id, **overrides
        )
        state["publisher"] = publisher
        state["poller"] = _Poller(publisher)
        yield
        state["poller"].close()

    return lifespan


def _answer(
    status: int, body: dict[str, Any], request_id: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A JSON answer carrying the request id, the key to the gateway's log."""
    return JSONResponse(
        body, status_code=status, headers={"X-Request-ID": request_id} | (headers or {})
    )


def _label(event_type: str) -> str:
    """The metric label of the URL's type: the type if known, else ``unknown``."""
    return event_type if event_type in EVENT_TYPES else UNKNOWN


def _admit(event_type: str, request: Request) -> None:
    """Refuse a type clients may not publish (``403``; an unknown type is left to the
    validation, which names the known ones) and a body that is not JSON (``415``)."""
    if event_type in EVENT_TYPES and event_type not in PUBLISHABLE:
        raise Refused(
            403,
            f"{event_type} events are internal: clients may not publish them",
            publishable=sorted(PUBLISHABLE),
        )
    require_json(request.headers)


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not 0 < len(key) <= MAX_KEY_CHARS:
        raise Refused(400, f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} characters")
    return key


def _parse(body: bytes, limits: _Limits) -> list[dict[str, Any]]:
    """The body as a list of JSON objects (one object counts as a list of one); ``400``
    when it is not JSON, nests too deep, is not objects or holds a string longer than
    ``limits.field_chars``; ``413`` when it holds more than ``limits.batch``."""
    parsed = parse_json(body, limits.depth)
    items = parsed if isinstance(parsed, list) else [parsed]
    if len(items) > limits.batch:
        raise Refused(413, f"{len(items)} events in one request; at most {limits.batch}")
    if not items or not all(isinstance(i, dict) for i in items):
        raise Refused(400, "body must be a JSON object or a non-empty list of objects")
    too_long = long_strings(items, limits.field_chars)
    if too_long:
        errors = [
            _field_error(path, f"longer than {limits.field_chars} characters") for path in too_long
        ]
        raise Refused(400, f"a field longer than {limits.field_chars} characters", errors=errors)
    return items


def _field_error(path: str, message: str) -> dict[str, Any]:
    """``0.history.1.text`` as ``{"index": 0, "field": "history.1.text", ...}``."""
    index, _, field = path.partition(".")
    return {"index": int(index) if index.isdigit() else 0, "field": field, "message": message}


def _validate(
    publisher: Publisher,
    items: list[dict[str, Any]],
    event_type: str,
    principal: Principal,
    key: str | None,
) -> list[Event]:
    """The events, their envelopes stamped with the token's tenant and producer (and the
    ids an idempotency key derives); ``400`` listing every field error of every item, so
    a batch with one bad event produces nothing; ``403`` if an item names another tenant."""
    errors: list[dict[str, Any]] = []
    foreign: list[int] = []
    events: list[Event] = []
    producer = principal.producer or PRODUCER
    for index, item in enumerate(items):
        try:
            event = publisher.prepare(item, event_type)
        except InvalidEvent as exc:
            errors.extend({"index": index, "field": f, "message": m} for f, m in exc.errors.items())
            continue
        raw = item.get("envelope")
        given: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if given.get("tenant_id", principal.tenant_id) != principal.tenant_id:
            foreign.append(index)
        stamp: dict[str, Any] = {"tenant_id": principal.tenant_id, "producer": producer}
        if key is not None and "event_id" not in given:
            stamp["event_id"] = derived_event_id(principal.tenant_id, key, event_type, index)
        events.append(
            event.model_copy(update={"envelope": event.envelope.model_copy(update=stamp)})
        )
    if errors:
        raise Refused(400, f"invalid {event_type} event", errors=errors)
    if foreign:
        raise Refused(403, "the events name a tenant this token does not stand for", items=foreign)
    return events


async def _produce(
    publisher: Publisher,
    events: list[Event],
    recent: RecentIds,
    ack_timeout_s: float,
    request_id: str,
) -> list[dict[str, Any]]:
    """Produce the events not acknowledged before and wait for the cluster: each item's
    result (``accepted``, ``duplicate``: acknowledged by an earlier request), or ``503``
    with the results (``failed`` ones are to retry) on any delivery failure (a timeout
    counts as one). The failure goes to the log under the request id, not to the client."""
    loop = asyncio.get_running_loop()
    waits: list[asyncio.Future[bool]] = []
    status: list[str] = []
    fresh: list[Event] = []
    mine: dict[uuid.UUID, asyncio.Future[bool]] = {}
    for event in events:
        k = (event.envelope.tenant_id, event.envelope.event_id)
        if k in recent:
            status.append(DUPLICATE)
            waits.append(_done(loop))
        elif k in recent.in_flight:  # a retry while the first attempt waits: share its fate
            status.append(DUPLICATE)
            waits.append(recent.in_flight[k])
        else:
            status.append(ACCEPTED)
            fut = recent.in_flight[k] = mine[event.envelope.event_id] = loop.create_future()
            waits.append(fut)
            fresh.append(event)

    def delivered(event_id: uuid.UUID, err: KafkaError | None) -> None:
        fut = mine.get(event_id)
        if fut is not None:
            loop.call_soon_threadsafe(_settle, fut, err)

    first_error: list[KafkaError] = []

    def _settle(fut: asyncio.Future[bool], err: KafkaError | None) -> None:
        if err is not None and not first_error:
            first_error.append(err)
        if not fut.done():
            fut.set_result(err is None)

    try:
        if fresh:
            publisher.publish_many(fresh, on_delivery=delivered)
        done, _ = await asyncio.wait(waits, timeout=ack_timeout_s + 2) if waits else (set(), set())
    finally:
        for event in fresh:
            k = (event.envelope.tenant_id, event.envelope.event_id)
            fut = mine[event.envelope.event_id]
            if recent.in_flight.get(k) is fut:
                del recent.in_flight[k]
            if not fut.done():
                fut.set_result(False)  # a retry waiting on this attempt retries itself
            elif fut.result():
                recent.add(k)
    results = []
    for event, state, fut in zip(events, status, waits, strict=True):
        ok = fut in done and fut.result()
        results.append(
            {"event_id": str(event.envelope.event_id), "status": state if ok else FAILED}
        )
    DUPLICATES.inc(sum(r["status"] == DUPLICATE for r in results))
    failed = sum(r["status"] == FAILED for r in results)
    if failed:
        log.warning(
            "gateway request %s: %d of %d events not acknowledged: %s",
            request_id,
            failed,
            len(results),
            first_error[0] if first_error else "timed out",
        )
        raise Refused(
            503,
            "Kafka did not acknowledge every event; retry the request (accepted ones are not "
            "published again)",
            headers={"Retry-After": "5"},
            results=[{"index": i, **r} for i, r in enumerate(results)],
        )
    return [{"index": i, **r} for i, r in enumerate(results)]


def _done(loop: asyncio.AbstractEventLoop) -> asyncio.Future[bool]:
    fut: asyncio.Future[bool] = loop.create_future()
    fut.set_result(True)
    return fut
