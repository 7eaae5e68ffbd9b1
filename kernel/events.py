"""Pydantic mirrors of the Avro contracts in ``schemas/``.

Producers build these (or send their JSON to the gateway); validation errors name the
field. ``to_avro()`` gives the dict fastavro writes; ``from_avro()`` reads it back.
A unit test keeps every model's fields identical to its ``.avsc`` file.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


def utcnow() -> datetime:
    """Now, UTC, truncated to the millisecond the wire keeps."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Envelope(_Model):
    """Metadata on every event. Producers may omit it: defaults are filled in."""

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    event_time: datetime = Field(default_factory=utcnow)
    tenant_id: str = Field(default="default", min_length=1)
    schema_version: int = Field(default=1, ge=1)
    producer: str = Field(default="unknown", min_length=1)

    @field_validator("event_time")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("event_time must carry a timezone (e.g. 2026-01-31T12:00:00Z)")
        return v


class Event(_Model):
    """Base of every event: the envelope and the Avro/key plumbing."""

    schema_name: ClassVar[str]
    event_type: ClassVar[str]
    key_field: ClassVar[str] = "case_id"

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


NonEmpty = Field(min_length=1)


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


class Turn(_Model):
    speaker: Speaker
    text: str


class CustomerInteraction(Event):
    schema_name: ClassVar[str] = "CustomerInteraction"
    event_type: ClassVar[str] = "interaction"

    case_id: str = Field(min_length=1)
    channel: Channel = Channel.OTHER
    locale: str = "en-US"
    customer_message: str = Field(min_length=1)
    history: list[Turn] = Field(default_factory=list)


# --- suggestion served ----------------------------------------------------------------
class ScoredKnowledge(_Model):
    knowledge_id: str = Field(min_length=1)
    score: float


class Candidate(_Model):
    candidate_id: str = Field(min_length=1)
    text: str
    model_version: str
    cited_knowledge_ids: list[str] = Field(default_factory=list)


class SuggestionServed(Event):
    schema_name: ClassVar[str] = "SuggestionServed"
    event_type: ClassVar[str] = "suggestion"

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


# --- the four annotations -------------------------------------------------------------
class _Annotation(Event):
    request_id: str = Field(min_length=1)
    case_id: str = Field(min_length=1)
    agent_id: str = Field(min_length=1)


class Preference(StrEnum):
    A = "A"
    B = "B"
    TIE = "TIE"


class PairwisePreference(_Annotation):
    schema_name: ClassVar[str] = "PairwisePreference"
    event_type: ClassVar[str] = "preference"

    preferred: Preference


class Adoption(StrEnum):
    AS_IS = "AS_IS"
    EDITED = "EDITED"
    REJECTED = "REJECTED"


class RationaleCategory(StrEnum):
    ACCURATE = "ACCURATE"
    INCOMPLETE = "INCOMPLETE"
    INACCURATE = "INACCURATE"
    TONE = "TONE"
    POLICY = "POLICY"
    IRRELEVANT = "IRRELEVANT"
    OTHER = "OTHER"


class AdoptionDecision(_Annotation):
    schema_name: ClassVar[str] = "AdoptionDecision"
    event_type: ClassVar[str] = "adoption"

    decision: Adoption
    candidate_id: str | None = None
    final_text: str
    rationale_text: str
    rationale_category: RationaleCategory = RationaleCategory.OTHER

    @model_validator(mode="after")
    def _candidate_matches_decision(self) -> Self:
        if self.decision is Adoption.REJECTED and self.candidate_id is not None:
            raise ValueError("candidate_id must be null when decision is REJECTED")
        if self.decision is not Adoption.REJECTED and self.candidate_id is None:
            raise ValueError(f"candidate_id is required when decision is {self.decision.value}")
        return self


class Relevance(StrEnum):
    RELEVANT = "RELEVANT"
    PARTIAL = "PARTIAL"
    IRRELEVANT = "IRRELEVANT"


class RelevanceLabel(_Model):
    knowledge_id: str = Field(min_length=1)
    label: Relevance


class KnowledgeRelevance(_Annotation):
    schema_name: ClassVar[str] = "KnowledgeRelevance"
    event_type: ClassVar[str] = "relevance"

    labels: list[RelevanceLabel] = Field(min_length=1)


class AnnotationTiming(StrEnum):
    IMMEDIATE = "IMMEDIATE"
    DEFERRED = "DEFERRED"


class MissingItem(_Model):
    knowledge_id: str | None = None
    text: str | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not (self.knowledge_id or self.text or self.url):
            raise ValueError("a missing-knowledge item needs a knowledge_id, text or url")
        return self


class MissingKnowledge(_Annotation):
    schema_name: ClassVar[str] = "MissingKnowledge"
    event_type: ClassVar[str] = "missing-knowledge"

    items: list[MissingItem] = Field(min_length=1)
    timing: AnnotationTiming
    looked_up_at: datetime
    annotated_at: datetime


ANNOTATIONS: tuple[type[_Annotation], ...] = (
    PairwisePreference,
    AdoptionDecision,
    KnowledgeRelevance,
    MissingKnowledge,
)
Annotation = PairwisePreference | AdoptionDecision | KnowledgeRelevance | MissingKnowledge


# --- judge, knowledge, shards, models -------------------------------------------------
class AnnotationType(StrEnum):
    PREFERENCE = "PREFERENCE"
    ADOPTION = "ADOPTION"
    RELEVANCE = "RELEVANCE"
    MISSING_KNOWLEDGE = "MISSING_KNOWLEDGE"


class JudgeVerdict(Event):
    schema_name: ClassVar[str] = "JudgeVerdict"
    event_type: ClassVar[str] = "judge-verdict"

    annotation_event_id: uuid.UUID
    annotation_type: AnnotationType
    request_id: str
    case_id: str
    agent_pseudonym: str
    judge_name: str
    judge_version: str
    accepted: bool
    weight: float = Field(default=1.0, ge=0.0, le=1.0)
    scores: dict[str, float] = Field(default_factory=dict)
    reasons: list[str] = Field(default_factory=list)


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


class Component(StrEnum):
    RETRIEVER = "RETRIEVER"
    RANKER = "RANKER"
    GENERATOR = "GENERATOR"


class Split(StrEnum):
    TRAIN = "TRAIN"
    EVAL = "EVAL"


class OffsetRange(_Model):
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

    def key(self) -> str:
        """One key per (component, version): compaction keeps each version's last state."""
        return f"{self.component.value}:{self.version}"


_ALL: tuple[type[Event], ...] = (
    CustomerInteraction,
    SuggestionServed,
    *ANNOTATIONS,
    JudgeVerdict,
    KnowledgeChanged,
    ShardSealed,
    ModelLifecycle,
)
EVENT_TYPES: dict[str, type[Event]] = {cls.event_type: cls for cls in _ALL}
BY_SCHEMA: dict[str, type[Event]] = {cls.schema_name: cls for cls in EVENT_TYPES.values()}
