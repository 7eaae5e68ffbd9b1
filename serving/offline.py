"""Offline retrieval evaluation with real models: what trainers and benchmarks call.

Exact cosine search in numpy over the whole knowledge base gives the same ranking as the
served Qdrant collection (also exact, cosine) without starting a service, so a candidate
checkpoint is measured exactly the way it would serve.

    encoder = load_encoder(ModelSpec("r-2", "/ckpt/r-2"), settings.retriever_model)
    ranker = load_ranker(ModelSpec("k-2", "/ckpt/k-2"))
    metrics = evaluate_retrieval(dataset.knowledge, eval_cases, encoder, ranker)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kernel.rankers import Ranker
from kernel.ranking import Ranking, evaluate_rankings, rerank_order
from serving.knowledge.dataset import Case, KnowledgeObject
from serving.retriever import Encoder


@dataclass(frozen=True)
class Retrieved:
    """One case's retrieval: ids and scores, best first."""

    ids: list[str]
    scores: list[float]


def retrieve_all(
    knowledge: Sequence[KnowledgeObject],
    queries: Sequence[str],
    encoder: Encoder,
    k: int = 75,
    kb_vectors: np.ndarray | None = None,
) -> list[Retrieved]:
    """Top-``k`` knowledge per query (pass ``kb_vectors`` to reuse an embedded KB)."""
    vectors = kb_vectors if kb_vectors is not None else encoder.encode([o.text for o in knowledge])
    q = encoder.encode(list(queries), query=True)
    out = []
    for start in range(0, len(q), 256):  # bounded memory for large KBs
        sims = q[start : start + 256] @ vectors.T
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        for row, idx in zip(sims, top, strict=True):
            out.append(Retrieved([knowledge[j].id for j in idx], [float(row[j]) for j in idx]))
    return out


def rank_all(
    knowledge: Sequence[KnowledgeObject],
    queries: Sequence[str],
    retrieved: Sequence[Retrieved],
    ranker: Ranker,
    k: int = 8,
) -> list[list[str]]:
    """The served order per case: the ranker's top ``k``, then the rest as retrieved."""
    texts = {o.id: o.text for o in knowledge}
    out = []
    for query, r in zip(queries, retrieved, strict=True):
        top = ranker.rank(query, [texts[i] for i in r.ids], r.scores, k)
        out.append(rerank_order(r.ids, [r.ids[i] for i, _ in top]))
    return out


def evaluate_retrieval(
    knowledge: Sequence[KnowledgeObject],
    cases: Sequence[Case],
    encoder: Encoder,
    ranker: Ranker | None = None,
    retrieve_k: int = 75,
    rank_k: int = 8,
) -> dict[str, float]:
    """Recall@retrieve_k, Recall@rank_k, Precision@rank_k, MRR, nDCG of retriever+ranker
    on ``cases`` (query = ``case.query``), as :func:`kernel.ranking.evaluate_rankings`."""
    queries = [c.query for c in cases]
    retrieved = retrieve_all(knowledge, queries, encoder, retrieve_k)
    if ranker is None:
        served = [r.ids for r in retrieved]
    else:
        served = rank_all(knowledge, queries, retrieved, ranker, rank_k)
    pairs: list[Ranking] = [(s, c.gold_ids) for s, c in zip(served, cases, strict=True)]
    return evaluate_rankings(pairs, retrieve_k, rank_k)
