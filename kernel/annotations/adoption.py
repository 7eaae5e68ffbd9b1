"""Adoption: the agent sent a candidate as-is, edited it, or rejected both; with the text
sent and a rationale. The sent text is the evidence other annotations are checked against."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Self

from pydantic import model_validator

from kernel.annotations.base import Annotation, JudgeInput, ReplyPair, RuleConfig, RuleOutcome
from kernel.reasons import Reason
from kernel.text import is_boilerplate


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


class AdoptionDecision(Annotation):
    schema_name: ClassVar[str] = "AdoptionDecision"
    event_type: ClassVar[str] = "adoption"
    annotation_type: ClassVar[str] = "ADOPTION"
    topic: ClassVar[str] = "annotations.adoption"
    topic_doc: ClassVar[str] = "as-is / edited / rejected, sent text, rationale"
    pii_fields: ClassVar[tuple[str, ...]] = ("final_text", "rationale_text")

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

    def check_integrity(self, inp: JudgeInput, out: RuleOutcome) -> None:
        if not self.final_text.strip():
            out.reasons.append(Reason.MISSING_FIELDS("final_text"))
        candidates = {c.candidate_id for c in inp.suggestion.candidates}
        if self.candidate_id not in (None, *candidates):
            out.reasons.append(Reason.UNKNOWN_CANDIDATE(self.candidate_id))

    def judge(self, inp: JudgeInput, cfg: RuleConfig, out: RuleOutcome) -> None:
        """A rationale that says something (not empty, a stock phrase or one word)."""
        ok = not is_boilerplate(self.rationale_text, cfg.min_rationale_tokens)
        out.scores["rationale_quality"] = 1.0 if ok else 0.0
        if not ok:
            out.reasons.append(Reason.BOILERPLATE_RATIONALE())

    def default_choice(self) -> bool | None:
        return self.decision is Adoption.AS_IS and self.candidate_id == "A"

    def reply_pairs(self, inp: JudgeInput) -> list[ReplyPair]:
        """As-is: the sent candidate over the other; edited: the edit over the candidate;
        rejected: what was sent over each candidate."""
        cands = {c.candidate_id: c.text for c in inp.suggestion.candidates}
        cid = self.candidate_id
        if self.decision is Adoption.AS_IS and cid in cands:
            return [("generator", cands[cid], cands["B" if cid == "A" else "A"])]
        if self.decision is Adoption.EDITED and cid in cands:
            return [("generator", self.final_text, cands[cid])]
        if self.decision is Adoption.REJECTED:
            return [(f"generator:{c}", self.final_text, text) for c, text in sorted(cands.items())]
        return []
