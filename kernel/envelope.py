"""The envelope every event carries and the base of every event model.

The models are pydantic mirrors of the Avro contracts in ``schemas/``: producers build
them (or send their JSON to the gateway) and validation errors name the field.
``to_avro()`` gives the dict fastavro writes; ``from_avro()`` reads it back. Each model
also declares which of its fields hold free text (``pii_fields``, redacted before anything
is stored or published) and the topic it travels on.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator


def utcnow() -> datetime:
    """Now, UTC, truncated to the millisecond the wire keeps."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


DEFAULT_TENANT = "default"
_TENANT_SEP = "\x1f"  # ASCII unit separator: not in the ids clients send


def tenant_key(tenant: str, id_: str) -> str:
    """An id (a request, case or example id) within its tenant, for state that holds many
    tenants' ids: two tenants' identical ids never meet. The default tenant keeps the bare
    id, so state written before tenants were keyed still matches after an upgrade."""
    return id_ if tenant == DEFAULT_TENANT else f"{tenant}{_TENANT_SEP}{id_}"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Envelope(Model):
    """Metadata on every event. Producers may omit it: defaults are filled in."""

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    event_time: datetime = Field(default_factory=utcnow)
    tenant_id: str = Field(default=DEFAULT_TENANT, min_length=1)
    schema_version: int = Field(default=1, ge=1)
    producer: str = Field(default="unknown", min_length=1)

    @field_validator("event_time")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("event_time must carry a timezone (e.g. 2026-01-31T12:00:00Z)")
        return v


class Event(Model):
    """Base of every event: the envelope and the Avro/key plumbing."""

    schema_name: ClassVar[str]
    event_type: ClassVar[str]
    key_field: ClassVar[str] = "case_id"
    # free-text fields, redacted before anything is stored or published: ``name`` or
    # ``list_field[].name`` (each item's field); ids and enums are never listed
    pii_fields: ClassVar[tuple[str, ...]] = ()
    # whether an outside client may publish it through the gateway; the topics that
    # steer the system (models, knowledge, verdicts, sealed shards) stay internal
    client_publishable: ClassVar[bool] = False

    envelope: Envelope = Field(default_factory=Envelope)

    def key(self) -> str:
        """The Kafka key: the case id, so every event of a case lands on one partition."""
        return str(getattr(self, self.key_field))

    def to_avro(self) -> dict[str, Any]:
        """The record as fastavro writes it (StrEnum members are their symbol strings)."""
        return self.model_dump(mode="python")

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> Self:
        return cls.model_validate(record)

    def redacted(self, clean: Callable[[str], str]) -> Self:
        """A copy with ``clean`` applied to every field named in ``pii_fields``."""
        if not self.pii_fields:
            return self
        update: dict[str, Any] = {}
        for path in self.pii_fields:
            name, _, sub = path.partition("[].")
            value = update.get(name, getattr(self, name))
            if sub:
                update[name] = [
                    item.model_copy(update={sub: _clean(getattr(item, sub), clean)})
                    for item in value
                ]
            else:
                update[name] = _clean(value, clean)
        return self.model_copy(update=update)


def _clean(value: str | None, clean: Callable[[str], str]) -> str | None:
    return None if value is None else clean(value)
