"""HTTP gateway for platforms that push webhooks instead of using the SDK.

``POST /v1/events/{type}`` takes one JSON event or a list, validates every one, produces
them and answers ``202 {"event_ids": [...]}`` once the cluster acknowledged them all.
Invalid input gets ``400`` with field errors and nothing is produced; if Kafka does not
acknowledge in time the answer is ``503`` (the client retries; ids make retries safe).

Clients publish only the types whose class says ``client_publishable`` (interactions,
suggestions, every annotation type); the others (``model``, ``knowledge``,
``judge-verdict``, ``shard-sealed``) steer the system and get ``403``. The body must be
``application/json`` (``415``), at most ``gateway_max_body_bytes`` (``413``), at most
``gateway_max_batch`` events (``413``) nested at most ``gateway_max_depth`` deep (``400``).
Every answer carries an ``X-Request-ID``; an error's details go to the log under it, never
into the answer. Metric labels name a known type only, so clients cannot grow the series.
"""

from __future__ import annotations

import asyncio
import hmac
import json
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

from kernel.errors import AitlError, SecurityError
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
        request_id = uuid.uuid4().hex
        label = _label(event_type)
        try:
            if not _authorized(tokens, request):
                label = UNAUTHORIZED
                raise _Refused(401, "missing or invalid bearer token")
            _admit(event_type, request)
            body = await _read_body(request, settings.gateway_max_body_bytes)
            items = _parse(body, settings.gateway_max_batch, settings.gateway_max_depth)
            publisher: Publisher = state["publisher"]
            _validate(publisher, items, event_type)
            ids = await _produce(publisher, items, event_type, ack_timeout_s, request_id)
        except _Refused as refused:
            REQUESTS.labels(label, str(refused.status)).inc()
            body_out = {**refused.body, "request_id": request_id}
            return _answer(refused.status, body_out, request_id, refused.headers)
        except Exception:  # the text stays in the log: answers never carry exception text
            log.exception("gateway request %s failed", request_id)
            REQUESTS.labels(label, "500").inc()
            error = "internal error; the gateway log has it under the request id"
            return _answer(500, {"error": error, "request_id": request_id}, request_id)
        REQUESTS.labels(label, "202").inc()
        EVENTS.labels(label).inc(len(ids))
        LATENCY.observe(time.perf_counter() - started)
        return _answer(202, {"event_ids": [str(i) for i in ids]}, request_id)

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


class _Refused(AitlError):
    """A request the gateway answers with ``status`` instead of ``202``: ``body`` is what
    the client reads (an ``error`` and any details), never an exception's text."""

    def __init__(
        self, status: int, error: str, headers: dict[str, str] | None = None, **details: Any
    ) -> None:
        super().__init__(error, status=status)
        self.status = status
        self.body: dict[str, Any] = {"error": error, **details}
        self.headers = headers or {}


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


def _admit(event_type: str, request: Request) -> None:
    """Refuse a type clients may not publish (``403``; an unknown type is left to the
    validation, which names the known ones) and a body that is not JSON (``415``)."""
    if event_type in EVENT_TYPES and event_type not in PUBLISHABLE:
        raise _Refused(
            403,
            f"{event_type} events are internal: clients may not publish them",
            publishable=sorted(PUBLISHABLE),
        )
    if not _is_json(request.headers.get("content-type", "")):
        raise _Refused(415, "Content-Type must be application/json (UTF-8)")


def _is_json(content_type: str) -> bool:
    """``application/json``, optionally with a UTF-8 charset (RFC 8259: JSON is UTF-8)."""
    media, *params = (p.strip().lower() for p in content_type.split(";"))
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            return False
    return media == "application/json"


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, or ``413`` as soon as it is longer than ``limit`` bytes: by its declared
    length before reading, by what arrived while reading (chunked uploads)."""
    too_large = _Refused(413, f"body larger than {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def _parse(body: bytes, max_batch: int, max_depth: int) -> list[dict[str, Any]]:
    """The body as a list of JSON objects (one object counts as a list of one); ``400``
    when it is not JSON, nests deeper than ``max_depth`` or is not objects, ``413`` when
    it holds more than ``max_batch``."""
    too_deep = _Refused(400, f"JSON nested deeper than {max_depth} levels")
    if _nests_deeper(body, max_depth):
        raise too_deep
    try:
        parsed = json.loads(body)
    except RecursionError:  # only when max_depth is set above the interpreter's limit
        raise too_deep from None
    except ValueError:
        raise _Refused(400, "body is not valid JSON") from None
    items = parsed if isinstance(parsed, list) else [parsed]
    if len(items) > max_batch:
        raise _Refused(413, f"{len(items)} events in one request; at most {max_batch}")
    if not items or not all(isinstance(i, dict) for i in items):
        raise _Refused(400, "body must be a JSON object or a non-empty list of objects")
    return items


_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def _nests_deeper(body: bytes, limit: int) -> bool:
    """Whether the JSON text opens more than ``limit`` brackets at once, counted outside
    strings and without recursion: ``[`` x 200,000 is a 400, not a RecursionError.

    Escaped backslashes, then escaped quotes, are dropped, so every quote left opens or
    closes a string; the text between quotes alternates outside/inside. All linear passes
    in C; Python steps only through the brackets, and stops at the first too deep."""
    text = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(text.split(b'"')[::2]).translate(None, _NOT_BRACKET)
    depth = 0
    for byte in brackets:
        depth += 1 if byte in b"[{" else -1
        if depth > limit:
            return True
    return False


def _validate(publisher: Publisher, items: list[dict[str, Any]], event_type: str) -> None:
    """``400`` listing every field error of every item: a batch with one bad event
    produces nothing."""
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            publisher.prepare(item, event_type)
        except InvalidEvent as exc:
            errors.extend({"index": index, "field": f, "message": m} for f, m in exc.errors.items())
    if errors:
        raise _Refused(400, f"invalid {event_type} event", errors=errors)


async def _produce(
    publisher: Publisher,
    items: list[dict[str, Any]],
    event_type: str,
    ack_timeout_s: float,
    request_id: str,
) -> list[uuid.UUID]:
    """Produce the items and wait for the cluster's acknowledgements: the event ids, or
    ``503`` on any delivery failure (a timeout counts as one) so the client retries. The
    failure goes to the log under the request id, not to the client."""
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
    failures = [r for r in results if r is not None]
    if failures:
        log.warning(
            "gateway request %s: %d of %d events not acknowledged: %s",
            request_id,
            len(failures),
            len(ids),
            failures[0],
        )
        raise _Refused(
            503, "Kafka did not acknowledge the events; retry", headers={"Retry-After": "5"}
        )
    return ids
