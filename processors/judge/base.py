"""What a judge sees and says: :class:`JudgeInput` in, :class:`Verdict` out.

Reasons are :class:`kernel.reasons.Reason` codes, optionally followed by ``:detail``
(``preference_mismatch:B``); the enum says which reject. What a judge sees,
:class:`JudgeInput`, is the kernel's (annotation types' rules read it too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from kernel.annotations import Annotation, JudgeInput
from kernel.events import Envelope, JudgeVerdict
from kernel.reasons import REJECTING, Reason, reason_code, rejects


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
        """The verdict as published on the judge-verdict topic, in the annotation's tenant."""
        return JudgeVerdict(
            envelope=Envelope(tenant_id=ann.envelope.tenant_id, producer="aitl-processors"),
            annotation_event_id=ann.envelope.event_id,
            annotation_type=ann.annotation_type,
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
    rejected = any(rejects(r) for r in reasons)
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


__all__ = [
    "REJECTING",
    "Judge",
    "JudgeInput",
    "Reason",
    "Verdict",
    "decide",
    "reason_code",
]
