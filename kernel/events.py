"""Every event on aitl's topics, in one import: the envelope, the messages and the
annotation types (from :mod:`kernel.annotations`, one module per type).

``EVENT_TYPES`` (by event type, as the gateway's URL names it) and ``BY_SCHEMA`` (by Avro
record name) are built from the classes, so a new annotation type is found without an
edit here. A unit test keeps every model's fields identical to its ``.avsc`` file.
"""

from __future__ import annotations

from kernel.annotations import (
    ANNOTATIONS,
    Adoption,
    AdoptionDecision,
    Annotation,
    AnnotationTiming,
    KnowledgeRelevance,
    MissingItem,
    MissingKnowledge,
    PairwisePreference,
    Preference,
    RationaleCategory,
    Relevance,
    RelevanceLabel,
)
from kernel.envelope import Envelope, Event, Model, utcnow
from kernel.messages import (
    ANNOTATION_TYPES,
    Candidate,
    Channel,
    Component,
    CustomerInteraction,
    JudgeVerdict,
    KnowledgeChanged,
    KnowledgeKind,
    KnowledgeOp,
    LifecycleAction,
    ModelLifecycle,
    OffsetRange,
    ScoredKnowledge,
    ShardSealed,
    Speaker,
    Split,
    SuggestionServed,
    Turn,
)

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

__all__ = [
    "ANNOTATIONS",
    "ANNOTATION_TYPES",
    "BY_SCHEMA",
    "EVENT_TYPES",
    "Adoption",
    "AdoptionDecision",
    "Annotation",
    "AnnotationTiming",
    "Candidate",
    "Channel",
    "Component",
    "CustomerInteraction",
    "Envelope",
    "Event",
    "JudgeVerdict",
    "KnowledgeChanged",
    "KnowledgeKind",
    "KnowledgeOp",
    "KnowledgeRelevance",
    "LifecycleAction",
    "MissingItem",
    "MissingKnowledge",
    "Model",
    "ModelLifecycle",
    "OffsetRange",
    "PairwisePreference",
    "Preference",
    "RationaleCategory",
    "Relevance",
    "RelevanceLabel",
    "ScoredKnowledge",
    "ShardSealed",
    "Speaker",
    "Split",
    "SuggestionServed",
    "Turn",
    "utcnow",
]
