"""The Virtual Judge's reason codes: one enum, each code saying whether it rejects.

A reason on a verdict is a code, optionally followed by ``:detail``
(``preference_mismatch:preferred A, sent B``). Rejecting codes drop the annotation; the
others are notes that may lower its weight (fatigue, deferred annotation) or say what the
judge could not check. The code (never the detail) is the metric label.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # the annotation cannot become an example, or does not belong to its suggestion
    MISSING_FIELDS = "missing_fields"
    CASE_MISMATCH = "case_mismatch"
    UNKNOWN_CANDIDATE = "unknown_candidate"
    UNKNOWN_KNOWLEDGE = "unknown_knowledge"
    ORPHAN = "orphan"
    # the annotation contradicts the evidence or the agent's record
    PREFERENCE_MISMATCH = "preference_mismatch"
    RELEVANCE_CONTRADICTS_REPLY = "relevance_contradicts_reply"
    MISSING_WAS_SHOWN = "missing_was_shown"
    BOILERPLATE_RATIONALE = "boilerplate_rationale"
    LLM_REJECTED = "llm_rejected"
    UNRELIABLE_AGENT = "unreliable_agent"
    LOW_AGREEMENT = "low_agreement"  # the agent's labels disagree with the other agents'
    ATYPICAL_BEHAVIOUR = "atypical_behaviour"  # always A / as-is / all relevant / copied
    # notes: accepted, maybe at a lower weight
    ADOPTION_MISSING = "adoption_missing"
    KNOWLEDGE_MISSING = "knowledge_missing"
    DEFERRED_ANNOTATION = "deferred_annotation"
    FATIGUE_DEFAULT_RUN = "fatigue_default_run"
    FATIGUE_VOLUME_DROP = "fatigue_volume_drop"
    LLM = "llm"
    LLM_FALLBACK = "llm_fallback"

    @property
    def rejects(self) -> bool:
        """Whether a verdict carrying this code rejects the annotation."""
        return self in _REJECTING

    def __call__(self, detail: object = None) -> str:
        """The reason as a verdict carries it: ``code`` or ``code:detail``."""
        return self.value if detail is None else f"{self.value}:{detail}"


_REJECTING = frozenset(
    {
        Reason.MISSING_FIELDS,
        Reason.CASE_MISMATCH,
        Reason.UNKNOWN_CANDIDATE,
        Reason.UNKNOWN_KNOWLEDGE,
        Reason.ORPHAN,
        Reason.PREFERENCE_MISMATCH,
        Reason.RELEVANCE_CONTRADICTS_REPLY,
        Reason.MISSING_WAS_SHOWN,
        Reason.BOILERPLATE_RATIONALE,
        Reason.LLM_REJECTED,
        Reason.UNRELIABLE_AGENT,
        Reason.LOW_AGREEMENT,
        Reason.ATYPICAL_BEHAVIOUR,
    }
)
REJECTING: frozenset[str] = frozenset(r.value for r in _REJECTING)


def reason_code(reason: str) -> str:
    """``preference_mismatch:B`` -> ``preference_mismatch`` (the metric label)."""
    return reason.split(":", 1)[0]


def rejects(reason: str) -> bool:
    """Whether a verdict's reason string rejects (unknown codes do not)."""
    return reason_code(reason) in REJECTING
