"""Offline evaluation: exact search + rerank give the served order and its metrics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kernel.rankers import Ranker
from serving.knowledge.dataset import Case, KnowledgeObject
from serving.offline import evaluate_retrieval, retrieve_all
from tests.unit.test_index import WordEncoder

KB = [
    KnowledgeObject("kb-pets", "faq", "Pets", "Pets are allowed for a fee", None),
    KnowledgeObject("kb-wifi", "faq", "Wifi", "Wifi is free in every room", None),
    KnowledgeObject("kb-park", "faq", "Parking", "Parking costs ten dollars", None),
]
CASES = [
    Case("c1", 0, [("U", "is wifi free")], "is wifi free", ["kb-wifi"], "Yes."),
    Case("c2", 1, [("U", "can i bring pets")], "can i bring pets", ["kb-pets"], "Yes."),
]


class Reverse(Ranker):
    kind = "reverse"

    def score(self, query: str, texts: Sequence[str], prior: Sequence[float]) -> np.ndarray:
        return -np.asarray(prior, dtype=np.float64)


def test_exact_search_ranks_the_matching_object_first() -> None:
    out = retrieve_all(KB, ["is wifi free"], WordEncoder("v1"), k=2)  # type: ignore[arg-type]
    assert out[0].ids[0] == "kb-wifi"
    assert len(out[0].ids) == 2
    assert out[0].scores == sorted(out[0].scores, reverse=True)


def test_metrics_of_retriever_alone_and_with_a_ranker() -> None:
    encoder = WordEncoder("v1")
    plain = evaluate_retrieval(KB, CASES, encoder, None, retrieve_k=3, rank_k=1)  # type: ignore[arg-type]
    assert plain["recall_at_3"] == 1.0
    assert plain["precision_at_1"] == 1.0
    reversed_ = evaluate_retrieval(KB, CASES, encoder, Reverse("r"), retrieve_k=3, rank_k=1)  # type: ignore[arg-type]
    assert reversed_["recall_at_3"] == 1.0  # a ranker never changes Recall@K
    assert reversed_["precision_at_1"] == 0.0  # it put each case's best match last
