"""Retrieval metrics against hand-computed examples."""

from __future__ import annotations

import math

import pytest

from kernel.ranking import (
    evaluate_rankings,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
    rerank_order,
)

RANKED = ["a", "x", "b", "y", "z"]
GOLD = ["a", "b", "c", "d"]


def test_recall_and_precision_by_hand() -> None:
    assert recall_at_k(RANKED, GOLD, 1) == 0.25
    assert recall_at_k(RANKED, GOLD, 3) == 0.5
    # k is the denominator even when fewer ids were returned
    assert precision_at_k(RANKED, GOLD, 8) == 2 / 8
    assert precision_at_k(RANKED, GOLD, 2) == 0.5


def test_mrr_and_ndcg_by_hand() -> None:
    assert reciprocal_rank(["x", "y", "b"], GOLD) == pytest.approx(1 / 3)
    assert reciprocal_rank(["x"], GOLD) == 0.0
    dcg = 1 + 1 / math.log2(4)
    ideal = 1 + 1 / math.log2(3)
    assert ndcg_at_k(RANKED, ["a", "b"], 3) == pytest.approx(dcg / ideal)


def test_evaluate_rankings_means_over_cases() -> None:
    out = evaluate_rankings([(RANKED, GOLD), (["c"], ["c"])], retrieve_k=75, rank_k=8)
    assert out["recall_at_75"] == pytest.approx((0.5 + 1.0) / 2)
    assert out["precision_at_8"] == pytest.approx((2 / 8 + 1 / 8) / 2)
    assert out["cases"] == 2


def test_case_without_gold_is_an_error() -> None:
    with pytest.raises(ValueError, match="gold"):
        recall_at_k(["a"], [], 1)
    with pytest.raises(ValueError, match="no cases"):
        evaluate_rankings([])


def test_rerank_order_keeps_recall_and_puts_ranked_first() -> None:
    order = rerank_order(["a", "b", "c", "d"], ["c", "a"])
    assert order == ["c", "a", "b", "d"]
