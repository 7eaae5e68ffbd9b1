"""What a judge sees and says: :class:`JudgeInput` in, :class:`Verdict` out.

Reasons are short codes, optionally followed by ``:detail`` (``preference_mismatch:B``).
Codes in :data:`REJECTING` reject the annotation; the others are notes that may lower
its weight (fatigue, deferred annotation) or say what the judge could not check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from kernel.events import (
    AdoptionDecision,
    Annotation,
    AnnotationType,
    JudgeVerdict,
    KnowledgeRelevance,
    MissingKnowledge,
    PairwisePreference,
    SuggestionServed,
)

REJECTING = frozenset(
    {
        "missing_fields",
        "case_mismatch",
        "unknown_candidate",
        "unknown_knowledge",
        "preference_mismatch",
        "relevance_contradicts_reply",
        "missing_was_shown",
        "boilerplate_rationale",
        "orphan",
        "llm_rejected",
        "unreliable_agent",
    }
)

ANNOTATION_TYPE: dict[type, AnnotationType] = {
    PairwisePreference: AnnotationType.PREFERENCE,
    AdoptionDecision: AnnotationType.ADOPTION,
    KnowledgeRelevance: AnnotationType.RELEVANCE,
    MissingKnowledge: AnnotationType.MISSING_KNOWLEDGE,
}


def reason_code(reason: str) -> str:
    """``preference_mismatch:B`` -> ``preference_mismatch`` (the metric label)."""
    return reason.split(":", 1)[0]


def annotation_type(annotation: Annotation) -> AnnotationType:
    return ANNOTATION_TYPE[type(annotation)]


@dataclass(frozen=True)
class JudgeInput:
    """One annotation with its joined context (all text already redacted)."""

    annotation: Annotation
    suggestion: SuggestionServed
    agent: str  # pseudonym
    adoption: AdoptionDecision | None = None  # the request's adoption, when it arrived
    knowledge: Mapping[str, str] = field(default_factory=dict)  # id -> text, when known
    customer_message: str = ""
    notes: tuple[str, ...] = ()  # what the join could not supply (adoption_missing, ...)

    @property
    def type(self) -> AnnotationType:
        return annotation_type(self.annotation)


@dataclass(frozen=True)
class Verdict:
    """A judge's decision on one annotation."""

    accepted: bool
    judge_name: str
    judge_version: str
    weight: float = 1.0
    scores: Mapping[str, float] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()

    def with_reasons(self, *extra: str) -> Verdict:
        return replace(self, reasons=(*self.reasons, *extra))

    def to_event(self, ann: Annotation, agent: str) -> JudgeVerdict:
        """The verdict as published on the judge-verdict topic."""
        return JudgeVerdict(
            annotation_event_id=ann.envelope.event_id,
            annotation_type=annotation_type(ann),
            request_id=ann.request_id,
            case_id=ann.case_id,
            agent_pseudonym=agent,
            judge_name=self.judge_name,
            judge_version=self.judge_version,
            accepted=self.accepted,
            weight=min(1.0, max(0.0, self.weight)),
            scores=dict(self.scores),
            reasons=list(self.reasons),
        )


def decide(
    name: str, version: str, reasons: Sequence[str], weight: float, scores: Mapping[str, float]
) -> Verdict:
    """Accepted unless a reason is rejecting."""
    rejected = any(reason_code(r) in REJECTING for r in reasons)
    return Verdict(
        accepted=not rejected,
        judge_name=name,
        judge_version=version,
        weight=round(min(1.0, max(0.0, weight)), 4),
        scores=dict(scores),
        reasons=tuple(reasons),
    )


@runtime_checkable
class Judge(Protocol):
    """Decides whether an annotation is trustworthy training signal, and how much."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def remote(self) -> bool:
        """True: slow I/O per call; the stream judges in batches, on its timer."""
        ...

    async def judge_many(self, inputs: Sequence[JudgeInput]) -> list[Verdict]: ...
