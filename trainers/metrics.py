"""Pure ranking and preference metrics (no models, no I/O), shared by every evaluation.

Recall@k, Precision@k and reciprocal rank are kernel.ranking's; this module adds the
graded nDCG and the per-query aggregates the trainers report.

Conventions: a *ranking* is a list of knowledge ids, best first; *gold* is the set of ids
the agents marked relevant for the query; *gains* map ids to graded relevance labels
(RELEVANT 1.0, PARTIAL 0.5, IRRELEVANT 0.0; unlabelled ids count as 0).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence

# one definition of each retrieval metric, shared with serving and the benchmark
from kernel.ranking import precision_at_k as precision_at_k
from kernel.ranking import recall_at_k as recall_at_k
from kernel.ranking import reciprocal_rank as reciprocal_rank


def dcg_at_k(gains: Sequence[float], k: int) -> float:
    """Discounted cumulative gain of gains listed in ranked order (linear gains)."""
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains[:k]))


def graded_ndcg_at_k(ranking: Sequence[str], gains: Mapping[str, float], k: int) -> float:
    """nDCG@k with graded gains; 0 when no item has a positive gain."""
    ideal = dcg_at_k(sorted(gains.values(), reverse=True), k)
    if ideal <= 0:
        return 0.0
    return dcg_at_k([gains.get(item, 0.0) for item in ranking], k) / ideal


def retrieval_metrics(
    rankings: Sequence[Sequence[str]], golds: Sequence[Collection[str]], ks: Sequence[int] = (75, 8)
) -> dict[str, float]:
    """Mean Recall@k for each k, Precision@min(ks) and MRR over queries with gold."""
    pairs = [(r, g) for r, g in zip(rankings, golds, strict=True) if g]
    if not pairs:
        return {}
    n = len(pairs)
    out = {f"recall_at_{k}": sum(recall_at_k(r, g, k) for r, g in pairs) / n for k in ks}
    p = min(ks)
    out[f"precision_at_{p}"] = sum(precision_at_k(r, g, p) for r, g in pairs) / n
    out["mrr"] = sum(reciprocal_rank(r, g) for r, g in pairs) / n
    out["queries"] = float(n)
    return out


def ranking_metrics(
    rankings: Sequence[Sequence[str]],
    gains: Sequence[Mapping[str, float]],
    k: int = 8,
    relevant_at: float = 0.5,
) -> dict[str, float]:
    """Mean Precision@k (an item counts when its label >= ``relevant_at``) and nDCG@k."""
    pairs = [(r, g) for r, g in zip(rankings, gains, strict=True) if any(v > 0 for v in g.values())]
    if not pairs:
        return {}
    n = len(pairs)
    prec = 0.0
    for ranking, gain in pairs:
        gold = {item for item, v in gain.items() if v >= relevant_at}
        prec += precision_at_k(ranking, gold, k)
    return {
        f"precision_at_{k}": prec / n,
        f"ndcg_at_{k}": sum(graded_ndcg_at_k(r, g, k) for r, g in pairs) / n,
        "queries": float(n),
    }


def swapped_verdict(first_order: float, swapped_order: float) -> float:
    """Combine a judge's two verdicts on (A, B) and (B, A) into A's score in [0, 1].

    Each verdict is the probability that the reply shown *first* is better; asking both
    ways and averaging cancels a judge's position bias (a judge that always picks the
    first reply scores every pair 0.5, a tie).
    """
    return (first_order + (1.0 - swapped_order)) / 2.0


def win_rate(scores: Iterable[float]) -> float:
    """Mean pairwise score of the candidate (1 win, 0.5 tie, 0 loss); 0.5 on no pairs."""
    values = list(scores)
    return sum(values) / len(values) if values else 0.5
