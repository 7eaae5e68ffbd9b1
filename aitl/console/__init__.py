"""The agents' console and the flywheel page, served by the gateway.

``create_console_app`` is the gateway (``streams.gateway.create_app``, unchanged) with:

* ``/console``: the agent's panel for one case (static ES modules in ``static/``, no
  build step). It publishes every annotation through the gateway's own
  ``POST /v1/events/{type}`` with the agent's bearer token, through an IndexedDB outbox.
* ``/console/flywheel``: serving versions, candidates and the gate's numbers, promotions
  and rollbacks, verdicts by reason, annotation volume, capture latency, per-agent
  reliability; promote / roll back for a token with the models role
  (``AITL_MODELS_ADMIN_TOKENS``), by the registry's rules (``aitl models``).
* ``/console/api/*``: what the pages read, folded from the topics by ``TopicView``.

It lives in the application layer because promotion uses ``trainers.registry``.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from aitl.console.view import TopicView
from kernel.events import Component
from kernel.settings import Settings

if TYPE_CHECKING:
    from trainers.registry import LifecycleLog, Registry

STATIC = Path(__file__).parent / "static"


class PromoteBody(BaseModel):
    version: str
    reason: str | None = None
    force: bool = False


class RollbackBody(BaseModel):
    reason: str | None = None


def create_console_app(settings: Settings, *, ack_timeout_s: float = 10.0) -> FastAPI:
    """The gateway with the console mounted; the topic view lives as long as the app."""
    from streams.gateway import create_app

    app = create_app(settings, ack_timeout_s=ack_timeout_s)
    view = TopicView(settings.kafka)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[None]:
        view.start()
        try:
            async with inner(a):
                yield
        finally:
            view.stop()

    app.router.lifespan_context = lifespan
    app.include_router(_router(settings, view))
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    return app


def _has(tokens: frozenset[str], request: Request) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and any(
        hmac.compare_digest(token.encode(), t.encode()) for t in tokens
    )


def _router(settings: Settings, view: TopicView) -> APIRouter:  # noqa: C901 - routes only
    router = APIRouter()
    agents, admins = settings.token_set(), settings.admin_token_set()

    def reader(request: Request) -> None:
        """An agent's or an admin's token; anyone when auth is off (``AITL_API_TOKENS``
        unset), as for the gateway's publish endpoint."""
        if agents and not (_has(agents, request) or _has(admins, request)):
            raise HTTPException(401, "missing or invalid bearer token")

    def manager(request: Request) -> None:
        if not admins or not _has(admins, request):
            raise HTTPException(403, "this token may not promote or roll back models")

    @router.get("/console", include_in_schema=False)
    async def panel() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @router.get("/console/flywheel", include_in_schema=False)
    async def flywheel_page() -> FileResponse:
        return FileResponse(STATIC / "flywheel.html")

    @router.get("/console/api/config")
    async def config(request: Request) -> dict[str, Any]:
        reader(request)
        return {
            "tenant_id": settings.tenant_id,
            "can_manage": bool(admins) and _has(admins, request),
        }

    @router.get("/console/api/cases/{request_id}")
    async def case(request_id: str, request: Request) -> dict[str, Any]:
        reader(request)
        with view.lock:
            found = view.folded.case(request_id)
        if found is None:
            raise HTTPException(404, f"no suggestion {request_id!r} seen yet")
        return found

    @router.get("/console/api/knowledge")
    async def search(q: str, request: Request) -> dict[str, Any]:
        reader(request)
        with view.lock:
            return {"results": view.folded.search(q)}

    @router.get("/console/api/knowledge/{knowledge_id}")
    async def knowledge(knowledge_id: str, request: Request) -> dict[str, Any]:
        reader(request)
        with view.lock:
            return view.folded.knowledge_item(knowledge_id)

    @router.get("/console/api/queue")
    async def queue(agent_id: str, request: Request) -> dict[str, Any]:
        reader(request)
        with view.lock:
            return {"cases": view.folded.queue(agent_id)}

    @router.get("/console/api/flywheel")
    async def flywheel(request: Request) -> dict[str, Any]:
        reader(request)
        with view.lock:
            out = view.folded.flywheel()
        return out | {"can_manage": bool(admins) and _has(admins, request)}

    @router.post("/console/api/models/{component}/promote")
    def promote(component: str, body: PromoteBody, request: Request) -> JSONResponse:
        manager(request)
        return _lifecycle(settings, component, "promote", body.model_dump())

    @router.post("/console/api/models/{component}/rollback")
    def rollback(component: str, body: RollbackBody, request: Request) -> JSONResponse:
        manager(request)
        return _lifecycle(settings, component, "rollback", body.model_dump())

    return router


def console_registry(settings: Settings, log: LifecycleLog) -> Registry:
    """The registry the flywheel page promotes and rolls back through: it signs its events
    with ``AITL_LIFECYCLE_KEY``, as the trainers and ``aitl models`` do, so serving applies
    them (unsigned ones count as forged where a key is set)."""
    from trainers.registry import Registry

    return Registry(
        log,
        producer="aitl-console",
        tenant_id=settings.tenant_id,
        key=settings.lifecycle_key_bytes(),
    )


def _lifecycle(settings: Settings, component: str, op: str, body: dict[str, Any]) -> JSONResponse:
    """Promote or roll back through the registry, as ``aitl models`` does: a version the
    gate rejected needs ``force`` and a reason (409 without); any other refusal is 409."""
    from trainers.registry import GateRefused, KafkaLifecycleLog, RegistryError

    try:
        comp = Component.parse(component)
    except ValueError:
        return JSONResponse({"error": f"unknown component {component!r}"}, status_code=404)
    log = KafkaLifecycleLog(settings.kafka, producer_name="aitl-console")
    registry = console_registry(settings, log)
    try:
        if op == "promote":
            force, reason = body["force"], body["reason"]
            if force and not (reason and reason.strip()):
                return JSONResponse({"error": "force needs a reason"}, status_code=400)
            event = registry.promote(
                comp, body["version"], reason=reason or "manual promotion (console)", force=force
            )
        else:
            event = registry.rollback(comp, reason=body["reason"] or "manual rollback (console)")
    except GateRefused as exc:
        return JSONResponse({"error": str(exc), "gate_refused": True}, status_code=409)
    except RegistryError as exc:
        return JSONResponse({"error": str(exc)}, status_code=409)
    finally:
        log.close()
    return JSONResponse(
        {
            "action": event.action.value,
            "version": event.version,
            "previous_version": event.previous_version,
        }
    )
