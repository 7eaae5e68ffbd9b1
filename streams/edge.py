"""What both HTTP edges (the gateway's ``/v1/events``, serving's ``/v1/suggest``) check
before they act: who calls (a bearer token and the tenant it stands for), in which media
type, how large and how deep the body is, how long its strings are. An edge answers a
:class:`Refused` with its status and body, never with an exception's text.

Secure by default: :class:`Access` refuses to build without tokens unless ``auth`` is
``off``, which opens the edge to whoever reaches it, so it binds to 127.0.0.1 only and says
so in the log at every start.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from kernel.errors import AitlError, SecurityError
from kernel.settings import Principal, Settings

log = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"


class Refused(AitlError):
    """A request an edge answers with ``status``: ``body`` is what the client reads (an
    ``error`` and any details), never an exception's text."""

    def __init__(
        self, status: int, error: str, headers: dict[str, str] | None = None, **details: Any
    ) -> None:
        super().__init__(error, status=status)
        self.status = status
        self.body: dict[str, Any] = {"error": error, **details}
        self.headers = headers or {}


class Access:
    """Who may call an edge: each token's :class:`Principal`, or everyone (``auth=off``,
    no tokens), then as the default tenant."""

    def __init__(self, settings: Settings, edge: str) -> None:
        self.edge = edge
        self.principals = settings.principals()
        if not self.principals and settings.auth != "off":
            raise SecurityError(
                f"the {edge} has no API tokens: set AITL_API_TOKENS (token:tenant[:producer],"
                " comma-separated) or AITL_API_TOKEN_FILE; AITL_AUTH=off opens it on"
                " 127.0.0.1 for development",
                setting="AITL_API_TOKENS",
            )
        self.open = not self.principals
        self.anyone = Principal(settings.tenant_id)

    def warn_if_open(self) -> None:
        """Say in the log, at every start, that the edge asks no one for a token."""
        if self.open:
            log.warning(
                "AITL_AUTH=off: the %s accepts requests without a token, as tenant %r, "
                "on %s only; set AITL_API_TOKENS before exposing it",
                self.edge,
                self.anyone.tenant_id,
                LOOPBACK,
            )

    def bind_host(self, host: str) -> str:
        """The address to bind: ``host``, or the loopback address when the edge is open."""
        if self.open and host != LOOPBACK:
            log.warning("AITL_AUTH=off: the %s binds to %s, not %s", self.edge, LOOPBACK, host)
            return LOOPBACK
        return host

    def authenticate(self, headers: Mapping[str, str]) -> Principal | None:
        """The caller's principal, or ``None`` without a valid bearer token; every token is
        compared in constant time so none can be guessed byte by byte."""
        if self.open:
            return self.anyone
        scheme, _, given = headers.get("authorization", "").partition(" ")
        found: Principal | None = None
        for token, principal in self.principals.items():
            if hmac.compare_digest(given.encode(), token.encode()):
                found = principal
        return found if scheme.lower() == "bearer" else None


def require_json(headers: Mapping[str, str]) -> None:
    """``415`` unless the body is ``application/json`` (a charset, if any, UTF-8)."""
    if not is_json(headers.get("content-type", "")):
        raise Refused(415, "Content-Type must be application/json (UTF-8)")


def is_json(content_type: str) -> bool:
    """``application/json``, optionally with a UTF-8 charset (RFC 8259: JSON is UTF-8)."""
    media, *params = (p.strip().lower() for p in content_type.split(";"))
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            return False
    return media == "application/json"


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or ``413`` as soon as it is longer than ``limit`` bytes: by its declared
    length before reading, by what arrived while reading (chunked uploads)."""
    too_large = Refused(413, f"body larger than {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def parse_json(body: bytes, max_depth: int) -> Any:
    """The parsed body; ``400`` when it is not JSON or nests deeper than ``max_depth``."""
    too_deep = Refused(400, f"JSON nested deeper than {max_depth} levels")
    if nests_deeper(body, max_depth):
        raise too_deep
    try:
        return json.loads(body)
    except RecursionError:  # only when max_depth is set above the interpreter's limit
        raise too_deep from None
    except ValueError:
        raise Refused(400, "body is not valid JSON") from None


_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def nests_deeper(body: bytes, limit: int) -> bool:
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


def long_strings(value: Any, limit: int) -> list[str]:
    """The paths (``history.0.text``) of the strings in a parsed JSON value longer than
    ``limit`` characters, keys included; walked without recursion."""
    found: list[str] = []
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            if len(node) > limit:
                found.append(path or "(body)")
        elif isinstance(node, dict):
            for key, child in node.items():
                name = f"{path}.{key}" if path else str(key)
                if len(key) > limit:
                    found.append(f"{name[:40]}… (a key)")
                stack.append((name, child))
        elif isinstance(node, list):
            stack.extend((f"{path}.{i}" if path else str(i), c) for i, c in enumerate(node))
    return sorted(found)


__all__ = [
    "LOOPBACK",
    "Access",
    "Refused",
    "is_json",
    "long_strings",
    "nests_deeper",
    "parse_json",
    "read_body",
    "require_json",
]
