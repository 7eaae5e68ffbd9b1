"""``/v1/suggest``'s edge without Ray: who asks (the token's tenant), in which shape and
size, how long it may take, and what an error reveals. The ingress class runs without its
Serve wrapper; the model pipeline is a stub."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from starlette.requests import Request

from kernel.errors import SecurityError
from kernel.events import SuggestionServed
from kernel.settings import Principal, Settings
from serving.config import ServingSettings
from serving.ingress import Ingress, ServingMetrics, SuggestRequest, admit
from streams.edge import Access, Refused
from tests.factories import samples

TOKENS = "tok-a:acme, tok-b"
JSON = {"content-type": "application/json"}


def request(body: bytes | dict[str, Any], headers: dict[str, str]) -> Request:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/suggest",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    return Request(scope, receive)


def ask(token: str | None, body: bytes | dict[str, Any], **limits: Any) -> Any:
    headers = JSON | ({"authorization": f"Bearer {token}"} if token else {})
    access = Access(Settings(api_tokens=TOKENS), "serving ingress")
    return asyncio.run(admit(request(body, headers), access, ServingSettings(**limits)))


def refused(token: str | None, body: bytes | dict[str, Any], **limits: Any) -> Refused:
    with pytest.raises(Refused) as caught:
        ask(token, body, **limits)
    return caught.value


BODY = {"case_id": "case-1", "query": "my bill doubled", "history": []}


def test_the_tenant_is_the_tokens_and_a_body_naming_another_is_a_403() -> None:
    principal, body = ask("tok-a", BODY)
    assert principal.tenant_id == "acme" and body.case_id == "case-1"
    assert ask("tok-b", BODY)[0].tenant_id == "default"
    assert ask("tok-a", BODY | {"tenant_id": "acme"})[0].tenant_id == "acme"
    assert refused("tok-a", BODY | {"tenant_id": "globex"}).status == 403
    assert refused(None, BODY).status == 401
    assert refused("tok-c", BODY).status == 401


def test_suggest_refuses_to_start_without_tokens_unless_auth_is_off() -> None:
    from serving.app import build_app

    with pytest.raises(SecurityError, match="AITL_API_TOKENS"):
        build_app(Settings(), ServingSettings())
    access = Access(Settings(auth="off"), "serving ingress")
    assert access.bind_host("0.0.0.0") == "127.0.0.1"
    assert access.authenticate({}) == Principal("default")


def test_a_body_that_is_not_json_is_a_415() -> None:
    access = Access(Settings(api_tokens=TOKENS), "serving ingress")
    plain = request(BODY, {"authorization": "Bearer tok-a", "content-type": "text/plain"})
    with pytest.raises(Refused) as caught:
        asyncio.run(admit(plain, access, ServingSettings()))
    assert caught.value.status == 415


@pytest.mark.parametrize(
    ("body", "limits", "status", "field"),
    [
        (BODY | {"query": "x" * 101}, {"max_text_chars": 100}, 400, "query"),
        (
            BODY | {"history": [{"speaker": "AGENT", "text": "x" * 101}]},
            {"max_text_chars": 100},
            400,
            "history.0.text",
        ),
        (
            BODY | {"history": [{"speaker": "AGENT", "text": "hi"}] * 4},
            {"max_history_turns": 3},
            400,
            "history",
        ),
        (BODY | {"case_id": "c" * 21}, {"max_id_chars": 20}, 400, "case_id"),
        (BODY | {"query": "x" * 600}, {"max_body_bytes": 500}, 413, None),
        (b"[" * 100_000, {}, 400, None),
    ],
)
def test_suggest_caps_query_history_ids_body_and_depth(
    body: Any, limits: dict[str, Any], status: int, field: str | None
) -> None:
    refusal = refused("tok-a", body, **limits)
    assert refusal.status == status, refusal.body
    if field is not None:
        assert [e["field"] for e in refusal.body["errors"]] == [field]
    ask("tok-a", BODY, **limits)  # the same limits let a normal request through


class _Stub(Ingress.func_or_class.__mro__[1]):  # type: ignore[misc,name-defined]
    """The ingress class itself (not Serve's wrapper), built without models or Kafka."""

    def __init__(self, pipeline: Callable[..., Coroutine[Any, Any, Any]], **cfg: Any) -> None:
        self.access = Access(Settings(api_tokens=TOKENS), "serving ingress")
        self.cfg = ServingSettings(**cfg)
        self.prom = ServingMetrics()
        self._run = pipeline
        self.published: list[SuggestionServed] = []

    async def _pipeline(
        self, body: SuggestRequest, principal: Principal, started: float
    ) -> tuple[SuggestionServed, dict[str, Any]]:
        return await self._run(body, principal)

    async def _publish(self, event: SuggestionServed) -> None:
        self.published.append(event)

    def __del__(self) -> None:
        pass


def call(stub: _Stub, token: str = "tok-a") -> Any:
    headers = JSON | {"authorization": f"Bearer {token}"}
    response = asyncio.run(stub.suggest(request(BODY, headers)))
    return response.status_code, json.loads(response.body), response.headers


def test_the_suggestion_event_carries_the_tokens_tenant() -> None:
    async def pipeline(body: SuggestRequest, principal: Principal) -> Any:
        event = samples()["suggestion"]
        env = event.envelope.model_copy(update={"tenant_id": principal.tenant_id})
        return event.model_copy(update={"envelope": env}), {"request_id": "r"}

    stub = _Stub(pipeline)
    status, _, headers = call(stub)
    assert status == 200 and headers["x-request-id"]
    assert [e.envelope.tenant_id for e in stub.published] == ["acme"]


def test_a_slow_suggestion_is_a_504_and_errors_never_carry_exception_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def slow(body: SuggestRequest, principal: Principal) -> Any:
        await asyncio.sleep(5)

    status, body, headers = call(_Stub(slow, request_timeout_s=0.1))
    assert status == 504 and body["request_id"] == headers["x-request-id"]

    async def broken(body: SuggestRequest, principal: Principal) -> Any:
        raise RuntimeError("qdrant at /srv/secret/path refused")

    status, body, _ = call(_Stub(broken))
    assert status == 500 and "/srv/secret" not in json.dumps(body)
    assert any(body["request_id"] in m for m in caplog.messages)
    assert any("/srv/secret" in r.exc_text for r in caplog.records if r.exc_text)


def test_the_request_id_is_serves_when_the_proxy_gave_one() -> None:
    """Behind Serve's proxy the answer already carries its X-Request-ID: the body and the
    log use that one, so the client's header finds the log line."""

    async def broken(body: SuggestRequest, principal: Principal) -> Any:
        raise RuntimeError("boom")

    headers = JSON | {"authorization": "Bearer tok-a", "x-request-id": "serve-123"}
    response = asyncio.run(_Stub(broken).suggest(request(BODY, headers)))
    assert json.loads(response.body)["request_id"] == "serve-123"
    assert "x-request-id" not in response.headers  # Serve adds its own, once
