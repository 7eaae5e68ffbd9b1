"""One error base for aitl, and the few kinds a caller tells apart.

What goes wrong in the world aitl deals with (an event off its contract, an unacknowledged
delivery, security settings or a refused login, unusable data, a model or checkpoint, a
service that stopped) raises an :class:`AitlError`; the subclass says which, and
``context`` carries the facts a reader needs (topic, offset, setting, path), shown after
the message. The same mistake raises the same type wherever it is found.
``ValueError``/``RuntimeError`` stay as second bases where callers relied on them; an
argument a programmer got wrong and a pydantic validator still raise plain ``ValueError``.
"""

from __future__ import annotations

from typing import Any


class AitlError(Exception):
    """Base of every error aitl raises on purpose."""

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context: dict[str, Any] = {k: v for k, v in context.items() if v is not None}

    def __str__(self) -> str:
        if not self.context:
            return self.message
        facts = ", ".join(f"{k}={v}" for k, v in sorted(self.context.items()))
        return f"{self.message} ({facts})"


class ContractError(AitlError, ValueError):
    """An event that does not fit its contract: undecodable bytes, an invalid field, an
    unknown type or schema."""


class DeliveryError(AitlError, RuntimeError):
    """The broker did not acknowledge what was produced (after librdkafka's retries)."""


class SecurityError(AitlError, ValueError):
    """Security settings that cannot work together, or a refused login or handshake."""


class DataError(AitlError, ValueError):
    """Input data (a dataset, shards, training rows) that aitl cannot use."""


class ModelError(AitlError, RuntimeError):
    """A model or checkpoint that cannot be found, loaded, registered or promoted."""


class InfraError(AitlError, RuntimeError):
    """A service aitl runs or talks to (the local broker, Kafka, Ray) is not usable."""
