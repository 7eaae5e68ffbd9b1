"""Knowledge relevance: the agent's label for each knowledge object it was shown."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from kernel.annotations.adoption import Adoption
from kernel.annotations.base import Annotation, JudgeInput, RuleConfig, RuleOutcome, common
from kernel.envelope import Model
from kernel.reasons import Reason
from kernel.shards import RankerRow, RetrieverRow
from kernel.text import containment


class Relevance(StrEnum):
    RELEVANT = "RELEVANT"
    PARTIAL = "PARTIAL"
    IRRELEVANT = "IRRELEVANT"


LABEL_VALUE = {Relevance.RELEVANT: 1.0, Relevance.PARTIAL: 0.5, Relevance.IRRELEVANT: 0.0}


class RelevanceLabel(Model):
    knowledge_id: str = Field(min_length=1)
    label: Relevance


class KnowledgeRelevance(Annotation):
    schema_name: ClassVar[str] = "KnowledgeRelevance"
    event_type: ClassVar[str] = "relevance"
    annotation_type: ClassVar[str] = "RELEVANCE"
    topic: ClassVar[str] = "annotations.relevance"
    topic_doc: ClassVar[str] = "relevance label per knowledge object shown"
    waits_for_adoption: ClassVar[bool] = True

    labels: list[RelevanceLabel] = Field(min_length=1)

    def check_integrity(self, inp: JudgeInput, out: RuleOutcome) -> None:
        ids = [lab.knowledge_id for lab in self.labels]
        if len(set(ids)) != len(ids):
            out.reasons.append(Reason.MISSING_FIELDS("labels(duplicate ids)"))
        sugg = inp.suggestion
        shown = {k.knowledge_id for k in (*sugg.retrieved, *sugg.ranked)}
        unknown = sorted(set(ids) - shown)
        if unknown:
            out.reasons.append(Reason.UNKNOWN_KNOWLEDGE(",".join(unknown[:5])))

    def judge(self, inp: JudgeInput, cfg: RuleConfig, out: RuleOutcome) -> None:
        """An object labelled irrelevant that the sent reply used (cited, or most of its
        text in the reply) contradicts the reply; so does a label set of at least
        ``all_relevant_min_labels``, every one RELEVANT, of which the reply used none (the
        rubber stamp: agents typically find one or two of the shown objects relevant, and
        a reply that needed all of them would use at least one)."""
        if inp.adoption is None:
            out.reasons.append(Reason.ADOPTION_MISSING("labels not checked against the sent reply"))
            return
        adoption = inp.adoption
        sent = adoption.final_text
        cited: set[str] = set()
        if adoption.decision is Adoption.AS_IS and adoption.candidate_id is not None:
            for cand in inp.suggestion.candidates:
                if cand.candidate_id == adoption.candidate_id:
                    cited = set(cand.cited_knowledge_ids)

        def used(kid: str) -> bool:
            if kid in cited or f"[{kid}]" in sent:
                return True
            text = inp.knowledge.get(kid)
            if not text:
                return False
            share, hits = containment(text, sent)
            return share >= cfg.contradiction_containment and hits >= cfg.contradiction_min_tokens

        irrelevant = [lab.knowledge_id for lab in self.labels if lab.label is Relevance.IRRELEVANT]
        bad = [kid for kid in irrelevant if used(kid)]
        if irrelevant:
            out.scores["relevance_consistency"] = round(1.0 - len(bad) / len(irrelevant), 4)
        if bad:
            out.reasons.append(Reason.RELEVANCE_CONTRADICTS_REPLY(",".join(bad[:5])))
        if (
            not irrelevant
            and len(self.labels) >= cfg.all_relevant_min_labels
            and all(lab.label is Relevance.RELEVANT for lab in self.labels)
            and not any(used(lab.knowledge_id) for lab in self.labels)
        ):
            out.reasons.append(Reason.RELEVANCE_CONTRADICTS_REPLY("all relevant, reply used none"))

    def needed_knowledge(self, shown: list[str]) -> set[str]:
        return {lab.knowledge_id for lab in self.labels}

    def retriever_rows(self, inp: JudgeInput, weight: float) -> list[RetrieverRow]:
        """Each relevant object is a positive; the shown objects marked irrelevant are its
        hard negatives."""
        kb = inp.knowledge
        negatives = [
            lab.knowledge_id
            for lab in self.labels
            if lab.label is Relevance.IRRELEVANT and kb.get(lab.knowledge_id)
        ]
        return [
            RetrieverRow(
                **common(inp, weight, f"retriever:{lab.knowledge_id}"),
                query=inp.suggestion.query,
                positive_id=lab.knowledge_id,
                positive_text=kb[lab.knowledge_id],
                negative_ids=negatives,
                negative_texts=[kb[n] for n in negatives],
            )
            for lab in self.labels
            if lab.label is Relevance.RELEVANT and kb.get(lab.knowledge_id)
        ]

    def ranker_rows(self, inp: JudgeInput, weight: float) -> list[RankerRow]:
        """Every labelled object with a known text, graded."""
        return [
            RankerRow(
                **common(inp, weight, f"ranker:{lab.knowledge_id}"),
                query=inp.suggestion.query,
                knowledge_id=lab.knowledge_id,
                text=inp.knowledge[lab.knowledge_id],
                label=LABEL_VALUE[lab.label],
            )
            for lab in self.labels
            if inp.knowledge.get(lab.knowledge_id)
        ]
