"""Missing knowledge: what the agent had to look up elsewhere (an object, words, a URL)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Self

from pydantic import Field, model_validator

from kernel.annotations.base import Annotation, JudgeInput, RuleConfig, RuleOutcome, common
from kernel.envelope import Model
from kernel.reasons import Reason
from kernel.shards import RankerRow, RetrieverRow
from kernel.text import containment

# the paper: 63.9% agreement with experts when captured later vs 76.5% immediately
DEFERRED_WEIGHT = 0.639 / 0.765


class AnnotationTiming(StrEnum):
    IMMEDIATE = "IMMEDIATE"
    DEFERRED = "DEFERRED"


class MissingItem(Model):
    knowledge_id: str | None = None
    text: str | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not (self.knowledge_id or self.text or self.url):
            raise ValueError("a missing-knowledge item needs a knowledge_id, text or url")
        return self


class MissingKnowledge(Annotation):
    schema_name: ClassVar[str] = "MissingKnowledge"
    event_type: ClassVar[str] = "missing-knowledge"
    annotation_type: ClassVar[str] = "MISSING_KNOWLEDGE"
    topic: ClassVar[str] = "annotations.missing-knowledge"
    topic_doc: ClassVar[str] = "knowledge the agent looked up elsewhere"
    pii_fields: ClassVar[tuple[str, ...]] = ("items[].text", "items[].url")

    items: list[MissingItem] = Field(min_length=1)
    timing: AnnotationTiming
    looked_up_at: datetime
    annotated_at: datetime

    def check_integrity(self, inp: JudgeInput, out: RuleOutcome) -> None:
        missing: list[str] = []
        if any(not (it.knowledge_id or (it.text or "").strip()) for it in self.items):
            missing.append("items(no id or text)")
        if self.annotated_at < self.looked_up_at:
            missing.append("annotated_at(before looked_up_at)")
        if missing:
            out.reasons.append(Reason.MISSING_FIELDS(",".join(missing)))

    def judge(self, inp: JudgeInput, cfg: RuleConfig, out: RuleOutcome) -> None:
        """Knowledge the agent was in fact shown (the ranked objects) contradicts itself;
        knowledge retrieved deeper but not shown *was* missing for the agent: the ranker's
        miss, exactly the signal to learn from. A deferred annotation weighs less."""
        shown = [k.knowledge_id for k in inp.suggestion.ranked]
        hits: list[str] = []
        for item in self.items:
            if item.knowledge_id and item.knowledge_id in shown:
                hits.append(item.knowledge_id)
            elif item.text:
                for kid in shown:
                    text = inp.knowledge.get(kid)
                    if (
                        text
                        and containment(item.text, text)[0] >= cfg.missing_retrieved_containment
                    ):
                        hits.append(kid)
                        break
        if hits:
            out.reasons.append(Reason.MISSING_WAS_SHOWN(",".join(hits[:5])))
        late = (self.annotated_at - self.looked_up_at).total_seconds() > cfg.deferred_after_s
        if self.timing is AnnotationTiming.DEFERRED or late:
            out.weight *= DEFERRED_WEIGHT
            out.reasons.append(Reason.DEFERRED_ANNOTATION())

    def needed_knowledge(self, shown: list[str]) -> set[str]:
        return {it.knowledge_id for it in self.items if it.knowledge_id}

    def retriever_rows(self, inp: JudgeInput, weight: float) -> list[RetrieverRow]:
        """Each item with a text (the object's, or the agent's words) is a positive."""
        rows: list[RetrieverRow] = []
        for i, item in enumerate(self.items):
            text = inp.knowledge.get(item.knowledge_id or "") or item.text
            if not text:
                continue  # a bare URL: nothing to train on
            pid = item.knowledge_id or "text:" + hashlib.sha1(text.encode()).hexdigest()[:12]
            rows.append(
                RetrieverRow(
                    **common(inp, weight, f"retriever:m{i}"),
                    query=inp.suggestion.query,
                    positive_id=pid,
                    positive_text=text,
                    negative_ids=[],
                    negative_texts=[],
                )
            )
        return rows

    def ranker_rows(self, inp: JudgeInput, weight: float) -> list[RankerRow]:
        """Each item naming a known object is a relevant (1.0) example."""
        return [
            RankerRow(
                **common(inp, weight, f"ranker:m{i}"),
                query=inp.suggestion.query,
                knowledge_id=item.knowledge_id,
                text=inp.knowledge[item.knowledge_id],
                label=1.0,
            )
            for i, item in enumerate(self.items)
            if item.knowledge_id and inp.knowledge.get(item.knowledge_id)
        ]
