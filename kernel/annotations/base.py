"""What every annotation type is: an event with hooks the processors call.

Each annotation type is one module in this package that declares, on its event class:
its Avro schema name and topic, its free-text fields (``pii_fields``), its integrity
checks and Virtual Judge rules, the training rows it yields, and what it waits for in
the join. The processors run these hooks and never branch on the type; a new type is a
new module (found by :mod:`kernel.annotations`), its ``.avsc`` file, the type's symbol in
``judge_verdict.avsc`` and a test. See ``docs/architecture.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from kernel.envelope import Event
from kernel.messages import SuggestionServed
from kernel.prompt import PromptShape
from kernel.shards import RankerRow, RetrieverRow, RowCommon

if TYPE_CHECKING:  # the adoption is an annotation type like any other
    from kernel.annotations.adoption import AdoptionDecision


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
    def type(self) -> str:
        return self.annotation.annotation_type


@dataclass(frozen=True)
class RuleConfig:
    """The Virtual Judge rules' thresholds."""

    preference_margin: float = 0.05  # sent text this much closer to the other candidate
    contradiction_containment: float = 0.6  # share of a knowledge text found in the reply
    contradiction_min_tokens: int = 4
    missing_retrieved_containment: float = 0.8  # missing-item text ~ a retrieved object
    deferred_after_s: float = 600.0  # IMMEDIATE but annotated this late counts as deferred
    min_rationale_tokens: int = 2
    # this many labels or more, all RELEVANT, while the sent reply uses none of them
    all_relevant_min_labels: int = 4


@dataclass
class RuleOutcome:
    """What the rules found so far: reasons, the weight, scores."""

    reasons: list[str] = field(default_factory=list)
    weight: float = 1.0
    scores: dict[str, float] = field(default_factory=dict)


Rule = Callable[[JudgeInput, RuleConfig, RuleOutcome], None]
ReplyPair = tuple[str, str, str]  # (example id suffix, chosen, rejected)


class Annotation(Event):
    """Base of the annotation events: which request, case and agent, and the hooks."""

    annotation_type: ClassVar[str]  # the symbol in judge_verdict.avsc's AnnotationType
    topic: ClassVar[str]  # the catalog suffix of its topic (``annotations.<name>``)
    topic_doc: ClassVar[str]
    # a preference or a relevance label is checked against the reply the agent sent
    waits_for_adoption: ClassVar[bool] = False
    client_publishable: ClassVar[bool] = True  # agents' feedback comes from outside

    request_id: str = Field(min_length=1)
    case_id: str = Field(min_length=1)
    agent_id: str = Field(min_length=1)

    def check_integrity(self, inp: JudgeInput, out: RuleOutcome) -> None:
        """Whether it can become an example and belongs to its own suggestion: append
        ``missing_fields`` / ``unknown_*`` reasons (also run without the Virtual Judge)."""

    def judge(self, inp: JudgeInput, cfg: RuleConfig, out: RuleOutcome) -> None:
        """The Virtual Judge rules of this type: reasons, weight and scores into ``out``."""

    def default_choice(self) -> bool | None:
        """Whether this is the low-effort default (prefer A, send A as-is); None: not a
        choice. Fatigue tracking counts runs of defaults."""
        return None

    def needed_knowledge(self, shown: list[str]) -> set[str]:
        """Knowledge ids whose texts its rows need; ``shown`` is what the generator's prompt
        shows (the first ``PromptShape.knowledge`` ranked objects)."""
        return set(shown)

    def retriever_rows(self, inp: JudgeInput, weight: float) -> list[RetrieverRow]:
        return []

    def ranker_rows(self, inp: JudgeInput, weight: float) -> list[RankerRow]:
        return []

    def reply_pairs(self, inp: JudgeInput) -> list[ReplyPair]:
        """(suffix, chosen, rejected) replies for the generator's preference training."""
        return []


def common(inp: JudgeInput, weight: float, suffix: str) -> RowCommon:
    """The fields every training row has; ``example_id`` is the annotation's event id plus
    ``suffix``, so a replayed annotation yields the same ids."""
    ann = inp.annotation
    sources = [str(ann.envelope.event_id), str(inp.suggestion.envelope.event_id)]
    if inp.adoption is not None and inp.adoption is not ann:
        sources.append(str(inp.adoption.envelope.event_id))
    return {
        "example_id": f"{ann.envelope.event_id}:{suffix}",
        "source_event_ids": sources,
        "case_id": ann.case_id,
        "request_id": ann.request_id,
        "event_time": ann.envelope.event_time,
        "weight": float(weight),
    }


__all__ = ["Annotation", "JudgeInput", "PromptShape", "ReplyPair", "Rule", "RuleConfig"]
