"""The events that are not annotations: the conversation, the suggestion served, the
judge's verdict, knowledge changes, sealed shards and the model lifecycle. Annotation
events live in :mod:`kernel.annotations`, one module per type.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Self

from pydantic import Field, field_validator, model_validator

from kernel.envelope import Event, Model
from kernel.schemas import enum_symbols


# --- customer interaction -------------------------------------------------------------
class Channel(StrEnum):
    CHAT = "CHAT"
    EMAIL = "EMAIL"
    VOICE = "VOICE"
    MESSAGING = "MESSAGING"
    OTHER = "OTHER"


class Speaker(StrEnum):
    CUSTOMER = "CUSTOMER"
    AGENT = "AGENT"
    SYSTEM = "SYSTEM"


class Turn(Model):
    speaker: Speaker
    text: str


class CustomerInteraction(Event):
    schema_name: ClassVar[str] = "CustomerInteraction"
    event_type: ClassVar[str] = "interaction"
    client_publishable: ClassVar[bool] = True
    pii_fields: ClassVar[tuple[str, ...]] = ("customer_message", "history[].text")

    case_id: str = Field(min_length=1)
    channel: Channel = Channel.OTHER
    locale: str = "en-US"
    customer_message: str = Field(min_length=1)
    history: list[Turn] = Field(default_factory=list)


# --- suggestion served ----------------------------------------------------------------
class ScoredKnowledge(Model):
    knowledge_id: str = Field(min_length=1)
    score: float


class Candidate(Model):
    candidate_id: str = Field(min_length=1)
    text: str
    model_version: str
    cited_knowledge_ids: list[str] = Field(default_factory=list)


class SuggestionServed(Event):
    schema_name: ClassVar[str] = "SuggestionServed"
    event_type: ClassVar[str] = "suggestion"
    client_publishable: ClassVar[bool] = True
    pii_fields: ClassVar[tuple[str, ...]] = ("query", "candidates[].text")

    request_id: str = Field(min_length=1)
    case_id: str = Field(min_length=1)
    query: str
    retrieved: list[ScoredKnowledge]
    ranked: list[ScoredKnowledge]
    candidates: list[Candidate]
    model_versions: dict[str, str] = Field(default_factory=dict)
    latency_ms: float | None = None

    @field_validator("candidates")
    @classmethod
    def _two(cls, v: list[Candidate]) -> list[Candidate]:
        ids = [c.candidate_id for c in v]
        if ids != ["A", "B"]:
            raise ValueError(f"exactly two candidates with ids A and B are required, got {ids}")
        return v


# --- judge, knowledge, shards, models -------------------------------------------------
# The annotation types a verdict can name: the contract's enum, read from it
ANNOTATION_TYPES: tuple[str, ...] = enum_symbols("judge_verdict.avsc", "annotation_type")


class JudgeVerdict(Event):
    schema_name: ClassVar[str] = "JudgeVerdict"
    event_type: ClassVar[str] = "judge-verdict"

    annotation_event_id: uuid.UUID
    annotation_type: str  # an ANNOTATION_TYPES symbol
    request_id: str
    case_id: str
    agent_pseudonym: str
    judge_name: str
    judge_version: str
    accepted: bool
    weight: float = Field(default=1.0, ge=0.0, le=1.0)
    scores: dict[str, float] = Field(default_factory=dict)
    reasons: list[str] = Field(default_factory=list)

    @field_validator("annotation_type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        if v not in ANNOTATION_TYPES:
            raise ValueError(f"unknown annotation type {v!r}; known: {', '.join(ANNOTATION_TYPES)}")
        return v


class KnowledgeOp(StrEnum):
    UPSERT = "UPSERT"
    RETIRE = "RETIRE"


class KnowledgeKind(StrEnum):
    POLICY = "POLICY"
    FAQ = "FAQ"
    CASE = "CASE"
    REVIEW = "REVIEW"
    DOC = "DOC"
    OTHER = "OTHER"


class KnowledgeChanged(Event):
    schema_name: ClassVar[str] = "KnowledgeChanged"
    event_type: ClassVar[str] = "knowledge"
    key_field: ClassVar[str] = "knowledge_id"
    pii_fields: ClassVar[tuple[str, ...]] = ("title", "text")

    knowledge_id: str = Field(min_length=1)
    op: KnowledgeOp
    kind: KnowledgeKind = KnowledgeKind.OTHER
    title: str = ""
    text: str = ""
    entity: str | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _text_on_upsert(self) -> Self:
        if self.op is KnowledgeOp.UPSERT and not self.text.strip():
            raise ValueError("text is required when op is UPSERT")
        return self


class _Vocabulary(StrEnum):
    """An Avro enum (upper-case symbols) that paths, JSON and flags spell in lower case."""

    @property
    def slug(self) -> str:
        """``retriever``: the spelling of paths, shard dirs, metric labels and flags."""
        return self.value.lower()

    @classmethod
    def parse(cls, value: str) -> Self:
        """The member named ``value`` in either spelling (``retriever``, ``RETRIEVER``)."""
        try:
            return cls(value.strip().upper())
        except ValueError:
            known = ", ".join(m.slug for m in cls)
            raise ValueError(f"unknown {cls.__name__.lower()} {value!r}; known: {known}") from None


class Component(_Vocabulary):
    """The three trained parts, the one name for them everywhere."""

    RETRIEVER = "RETRIEVER"
    RANKER = "RANKER"
    GENERATOR = "GENERATOR"


class Split(_Vocabulary):
    TRAIN = "TRAIN"
    EVAL = "EVAL"


class OffsetRange(Model):
    topic: str
    partition: int = Field(ge=0)
    first_offset: int = Field(ge=0)
    last_offset: int = Field(ge=0)


class ShardSealed(Event):
    schema_name: ClassVar[str] = "ShardSealed"
    event_type: ClassVar[str] = "shard-sealed"
    key_field: ClassVar[str] = "shard_id"

    shard_id: str
    component: Component
    split: Split
    uri: str
    manifest_uri: str
    rows: int = Field(ge=0)
    min_event_time: datetime
    max_event_time: datetime
    judge_version: str
    source_offsets: list[OffsetRange] = Field(default_factory=list)


class LifecycleAction(StrEnum):
    REGISTERED = "REGISTERED"
    PROMOTED = "PROMOTED"
    ROLLED_BACK = "ROLLED_BACK"
    REJECTED = "REJECTED"


class ModelLifecycle(Event):
    schema_name: ClassVar[str] = "ModelLifecycle"
    event_type: ClassVar[str] = "model"

    component: Component
    version: str = Field(min_length=1)
    action: LifecycleAction
    artifact_uri: str
    base_model: str = ""
    snapshot_id: str | None = None
    judge_version: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    previous_version: str | None = None
    reason: str | None = None
    config_json: str = "{}"
    artifact_sha256: str = ""  # over the checkpoint's files; "" for events without one
    signature: str = ""  # HMAC-SHA256 over kernel.lifecycle.canonical(); "" when unsigned

    def key(self) -> str:
        """One key per (component, version): compaction keeps each version's last state."""
        return f"{self.component.value}:{self.version}"
