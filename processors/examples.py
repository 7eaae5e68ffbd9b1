"""Training examples from accepted annotations, typed rows (``kernel.shards``) by
component.

Each annotation type says what it yields (its module in ``kernel/annotations/``):
retriever rows (query -> positive, hard negatives), ranker rows (graded labels) and reply
pairs for the generator. This module adds what is the same for every type: the generator
prompt with the knowledge shown, built exactly as serving builds it
(:func:`kernel.prompt.build_prompt` with the serving :class:`PromptShape`), and the rationale
of the request's adoption.

``example_id`` is the annotation's event id plus a suffix, so a replayed annotation yields
the same ids and the shard writer can drop what is already sealed.
"""

from __future__ import annotations

from collections.abc import Sequence

from kernel.annotations import JudgeInput
from kernel.annotations.base import common
from kernel.events import Component, Turn
from kernel.prompt import PromptShape, build_prompt
from kernel.shards import GeneratorRow, Row
from processors.judge.base import Verdict

Rows = dict[Component, Sequence[Row]]

__all__ = ["PromptShape", "Rows", "build_examples", "generator_rows"]


def generator_rows(
    inp: JudgeInput,
    weight: float,
    history: list[Turn] | None = None,
    shape: PromptShape = PromptShape(),
) -> list[GeneratorRow]:
    """ORPO pairs from the annotation's reply pairs, with the prompt serving showed."""
    sugg = inp.suggestion
    pairs = [
        p for p in inp.annotation.reply_pairs(inp) if p[1].strip() and p[1].strip() != p[2].strip()
    ]
    if not pairs:
        return []
    shown = [k.knowledge_id for k in sugg.ranked[: shape.knowledge]]
    prompt = build_prompt(
        sugg.query,
        [(k, inp.knowledge.get(k)) for k in shown],
        inp.customer_message,
        [(t.speaker.value, t.text) for t in history or []],
        shape.chars,
    )
    source = inp.adoption
    return [
        GeneratorRow(
            **common(inp, weight, suffix),
            prompt=prompt,
            chosen=chosen,
            rejected=rejected,
            rationale=source.rationale_text if source else "",
            rationale_category=source.rationale_category.value if source else "",
            knowledge_ids=shown,
        )
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
    ann, weight = inp.annotation, float(verdict.weight)
    out: Rows = {
        Component.RETRIEVER: ann.retriever_rows(inp, weight),
        Component.RANKER: ann.ranker_rows(inp, weight),
        Component.GENERATOR: generator_rows(inp, weight, history, shape),
    }
    return {component: rows for component, rows in out.items() if rows}
