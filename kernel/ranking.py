"""Retrieval metrics over (ranked ids, gold ids) pairs: pure, shared by serving, trainers
and the benchmarks so every report measures the same thing.

Recall@k is the share of a case's gold knowledge found in its top k; Precision@k is the
share of the top k that is gold (k in the denominator even when fewer were returned, so a
short list is not rewarded). Means are over cases; a case without gold is an error.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence

Ranking = tuple[Sequence[str], Sequence[str]]  # (ranked ids, gold ids)


def _gold(gold: Collection[str]) -> set[str]:
    if not gold:
        raise ValueError("a case needs at least one gold id")
    return set(gold)


def recall_at_k(ranked: Sequence[str], gold: Collection[str], k: int) -> float:
    """Share of the gold ids that appear in the first ``k`` ranked ids."""
    g = _gold(gold)
    return len(g.intersection(ranked[:k])) / len(g)


def precision_at_k(ranked: Sequence[str], gold: Collection[str], k: int) -> float:
    """Share of the ``k`` first ranked ids that are gold (``k`` is the denominator)."""
    g = _gold(gold)
    return len(g.intersection(ranked[:k])) / k


def reciprocal_rank(ranked: Sequence[str], gold: Collection[str]) -> float:
    """1 / rank of the first gold id, 0 when none was retrieved."""
    g = _gold(gold)
    for position, knowledge_id in enumerate(ranked, start=1):
        if knowledge_id in g:
            return 1.0 / position
    return 0.0


def ndcg_at_k(ranked: Sequence[str], gold: Collection[str], k: int) -> float:
    """Binary-relevance nDCG@k."""
    g = _gold(gold)
    dcg = sum(1.0 / math.log2(i + 2) for i, kid in enumerate(ranked[:k]) if kid in g)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(g))))
    return dcg / ideal


def evaluate_rankings(
    rankings: Iterable[Ranking], retrieve_k: int = 75, rank_k: int = 8
) -> dict[str, float]:
    """Mean Recall@retrieve_k, Recall@rank_k, Precision@rank_k, MRR and nDCG@rank_k.

    Keys are ``recall_at_{retrieve_k}``, ``recall_at_{rank_k}``, ``precision_at_{rank_k}``,
    ``mrr``, ``ndcg_at_{rank_k}`` and ``cases``.
    """
    sums = {
        f"recall_at_{retrieve_k}": 0.0,
        f"recall_at_{rank_k}": 0.0,
        f"precision_at_{rank_k}": 0.0,
        "mrr": 0.0,
        f"ndcg_at_{rank_k}": 0.0,
    }
    n = 0
    for ranked, gold in rankings:
        n += 1
        sums[f"recall_at_{retrieve_k}"] += recall_at_k(ranked, gold, retrieve_k)
        sums[f"recall_at_{rank_k}"] += recall_at_k(ranked, gold, rank_k)
        sums[f"precision_at_{rank_k}"] += precision_at_k(ranked, gold, rank_k)
        sums["mrr"] += reciprocal_rank(ranked, gold)
        sums[f"ndcg_at_{rank_k}"] += ndcg_at_k(ranked, gold, rank_k)
    if n == 0:
        raise ValueError("no cases to evaluate")
    return {key: value / n for key, value in sums.items()} | {"cases": float(n)}


def rerank_order(retrieved: Sequence[str], reranked_top: Sequence[str]) -> list[str]:
    """The served order: the ranker's top ids, then the rest of the retrieved list.

    Recall@75 is measured on this list, so a reranker cannot change it; Precision@8 and
    Recall@8 see the reranker's choice.
    """
    top = list(dict.fromkeys(reranked_top))
    chosen = set(top)
    return top + [kid for kid in retrieved if kid not in chosen]
