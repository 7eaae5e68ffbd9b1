"""Training examples from accepted annotations, one row dict per example, in the row
schemas of ``kernel/shards.py``.

* retriever: query -> positive knowledge text; hard negatives = shown objects the agent
  marked IRRELEVANT (relevance), or the knowledge the agent had to find elsewhere
  (missing knowledge, no negatives).
* ranker: query, knowledge object, graded label (RELEVANT 1.0, PARTIAL 0.5, IRRELEVANT 0.0).
* generator: ORPO pairs: prompt with the knowledge shown (the serving generator's chat
  messages as JSON, see ``kernel.prompt``: the first ``PromptShape.knowledge`` ranked
  objects, clipped like serving clips them), chosen and rejected replies, the rationale.

``example_id`` is the annotation's event id plus a suffix, so a replayed annotation yields
the same ids and the shard writer can drop what is already sealed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from kernel.events import (
    Adoption,
    AdoptionDecision,
    Annotation,
    KnowledgeRelevance,
    MissingKnowledge,
    PairwisePreference,
    Preference,
    Relevance,
    Turn,
)
from kernel.prompt import Snippet, build_messages
from processors.judge.base import JudgeInput, Verdict

Rows = dict[str, list[dict[str, Any]]]  # component -> rows
LABEL_VALUE = {Relevance.RELEVANT: 1.0, Relevance.PARTIAL: 0.5, Relevance.IRRELEVANT: 0.0}


@dataclass(frozen=True)
class PromptShape:
    """What the serving generator shows (``Settings.prompt_knowledge`` / ``prompt_chars``)."""

    knowledge: int = 3
    chars: int = 300


def build_prompt(
    query: str,
    knowledge: list[tuple[str, str | None]],
    customer_message: str = "",
    history: list[Turn] | None = None,
    chars: int = 300,
) -> str:
    """The generator prompt exactly as serving builds it (``kernel.prompt``): a JSON list
    of chat messages, the numbered knowledge shown in the system turn, then the
    conversation, so training sees what serving shows. Style A (serving's default)."""
    turns = tuple((t.speaker.value, t.text) for t in history or [])
    key = (customer_message or query, tuple(knowledge), turns, chars)
    prompt = _PROMPTS.get(key)
    if prompt is None:  # a request's preference and adoption show the same prompt
        snippets = [Snippet(kid, text or "(text unavailable)") for kid, text in knowledge]
        messages = build_messages(key[0], list(turns), snippets, "A", max_chars=chars)
        prompt = json.dumps(messages, ensure_ascii=False)
        if len(_PROMPTS) >= 4096:
            _PROMPTS.clear()
        _PROMPTS[key] = prompt
    return prompt


_PROMPTS: dict[tuple[Any, ...], str] = {}


def _common(inp: JudgeInput, verdict: Verdict, suffix: str) -> dict[str, Any]:
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
        "weight": float(verdict.weight),
    }


def retriever_rows(inp: JudgeInput, verdict: Verdict) -> list[dict[str, Any]]:
    ann, query, kb = inp.annotation, inp.suggestion.query, inp.knowledge
    rows: list[dict[str, Any]] = []
    if isinstance(ann, KnowledgeRelevance):
        negatives = [
            lab.knowledge_id
            for lab in ann.labels
            if lab.label is Relevance.IRRELEVANT and kb.get(lab.knowledge_id)
        ]
        for lab in ann.labels:
            if lab.label is Relevance.RELEVANT and kb.get(lab.knowledge_id):
                rows.append(
                    _common(inp, verdict, f"retriever:{lab.knowledge_id}")
                    | {
                        "query": query,
                        "positive_id": lab.knowledge_id,
                        "positive_text": kb[lab.knowledge_id],
                        "negative_ids": negatives,
                        "negative_texts": [kb[n] for n in negatives],
                    }
                )
    elif isinstance(ann, MissingKnowledge):
        for i, item in enumerate(ann.items):
            text = kb.get(item.knowledge_id or "") or item.text
            if not text:
                continue  # a bare URL: nothing to train on
            pid = item.knowledge_id or "text:" + hashlib.sha1(text.encode()).hexdigest()[:12]
            rows.append(
                _common(inp, verdict, f"retriever:m{i}")
                | {
                    "query": query,
                    "positive_id": pid,
                    "positive_text": text,
                    "negative_ids": [],
                    "negative_texts": [],
                }
            )
    return rows


def ranker_rows(inp: JudgeInput, verdict: Verdict) -> list[dict[str, Any]]:
    ann, query, kb = inp.annotation, inp.suggestion.query, inp.knowledge
    rows: list[dict[str, Any]] = []
    if isinstance(ann, KnowledgeRelevance):
        for lab in ann.labels:
            text = kb.get(lab.knowledge_id)
            if text:
                rows.append(
                    _common(inp, verdict, f"ranker:{lab.knowledge_id}")
                    | {
                        "query": query,
                        "knowledge_id": lab.knowledge_id,
                        "text": text,
                        "label": LABEL_VALUE[lab.label],
                    }
                )
    elif isinstance(ann, MissingKnowledge):
        for i, item in enumerate(ann.items):
            text = kb.get(item.knowledge_id or "")
            if item.knowledge_id and text:
                rows.append(
                    _common(inp, verdict, f"ranker:m{i}")
                    | {
                        "query": query,
                        "knowledge_id": item.knowledge_id,
                        "text": text,
                        "label": 1.0,
                    }
                )
    return rows


def generator_rows(
    inp: JudgeInput,
    verdict: Verdict,
    history: list[Turn] | None = None,
    shape: PromptShape = PromptShape(),
) -> list[dict[str, Any]]:
    ann, sugg = inp.annotation, inp.suggestion
    cands = {c.candidate_id: c.text for c in sugg.candidates}
    pairs: list[tuple[str, str, str]] = []  # (suffix, chosen, rejected)
    rationale_from: AdoptionDecision | None = inp.adoption
    if isinstance(ann, PairwisePreference) and ann.preferred is not Preference.TIE:
        pref = ann.preferred.value
        pairs.append(("generator", cands[pref], cands["B" if pref == "A" else "A"]))
    elif isinstance(ann, AdoptionDecision):
        rationale_from = ann
        cid = ann.candidate_id
        if ann.decision is Adoption.AS_IS and cid in cands:
            pairs.append(("generator", cands[cid], cands["B" if cid == "A" else "A"]))
        elif ann.decision is Adoption.EDITED and cid in cands:
            pairs.append(("generator", ann.final_text, cands[cid]))
        elif ann.decision is Adoption.REJECTED:
            pairs += [(f"generator:{c}", ann.final_text, text) for c, text in sorted(cands.items())]
    pairs = [p for p in pairs if p[1].strip() and p[1].strip() != p[2].strip()]
    if not pairs:
        return []
    shown = [k.knowledge_id for k in sugg.ranked[: shape.knowledge]]
    prompt = build_prompt(
        sugg.query,
        [(k, inp.knowledge.get(k)) for k in shown],
        inp.customer_message,
        history,
        shape.chars,
    )
    rationale = rationale_from.rationale_text if rationale_from else ""
    category = rationale_from.rationale_category.value if rationale_from else ""
    return [
        _common(inp, verdict, suffix)
        | {
            "prompt": prompt,
            "chosen": chosen,
            "rejected": rejected,
            "rationale": rationale,
            "rationale_category": category,
            "knowledge_ids": shown,
        }
        for suffix, chosen, rejected in pairs
    ]


def build_examples(
    inp: JudgeInput,
    verdict: Verdict,
    history: list[Turn] | None = None,
    shape: PromptShape = PromptShape(),
) -> Rows:
    """Every training row an accepted annotation yields, by component (empty if rejected)."""
    if not verdict.accepted:
        return {}
    out: Rows = {
        "retriever": retriever_rows(inp, verdict),
        "ranker": ranker_rows(inp, verdict),
        "generator": generator_rows(inp, verdict, history, shape),
    }
    return {component: rows for component, rows in out.items() if rows}


def needed_knowledge(annotation: Annotation, shown: list[str]) -> set[str]:
    """Knowledge ids whose texts the rows of this annotation need; a preference or an
    adoption needs what the generator's prompt shows (``shown``: the first
    ``PromptShape.knowledge`` ranked objects)."""
    if isinstance(annotation, KnowledgeRelevance):
        return {lab.knowledge_id for lab in annotation.labels}
    if isinstance(annotation, MissingKnowledge):
        return {it.knowledge_id for it in annotation.items if it.knowledge_id}
    return set(shown)
