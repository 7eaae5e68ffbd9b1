"""Rankers: scoring shape, ordering, depth, and loading by checkpoint kind."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from kernel.checkpoints import ModelSpec
from kernel.errors import ModelError
from kernel.lifecycle import write_model_card
from kernel.rankers import NoRerank, Ranker, load_ranker

TEXTS = ["parking costs ten dollars", "pets are allowed", "wifi is free", "breakfast at seven"]
PRIOR = [0.9, 0.8, 0.7, 0.6]


class KeywordRanker(Ranker):
    kind = "keyword"

    def __init__(self, word: str, depth: int | None = None) -> None:
        super().__init__("test", depth)
        self.word = word
        self.seen = 0

    def score(self, query: str, texts: Sequence[str], prior: Sequence[float]) -> np.ndarray:
        self.seen += len(texts)
        return np.array([1.0 if self.word in t else 0.0 for t in texts], dtype=np.float32)


def test_no_rerank_keeps_the_retriever_order_and_scores() -> None:
    assert NoRerank("stock").rank("q", TEXTS, PRIOR, 3) == [(0, 0.9), (1, 0.8), (2, 0.7)]


def test_rerank_puts_the_best_first_and_ties_keep_retriever_order() -> None:
    ranked = KeywordRanker("wifi").rank("q", TEXTS, PRIOR, 3)
    assert [i for i, _ in ranked] == [2, 0, 1]
    assert ranked[0][1] == 1.0


def test_depth_bounds_the_rescoring() -> None:
    ranker = KeywordRanker("breakfast", depth=2)
    ranked = ranker.rank("q", TEXTS, PRIOR, 4)
    assert ranker.seen == 2  # only the first two were scored
    assert [i for i, _ in ranked] == [0, 1, 2, 3]  # the unscored never jump above
    assert ranked[2][1] < ranked[1][1]


def test_wrong_score_shape_and_mismatched_inputs_are_errors() -> None:
    class Broken(KeywordRanker):
        def score(self, query: str, texts: Sequence[str], prior: Sequence[float]) -> np.ndarray:
            return np.zeros(len(texts) + 1, dtype=np.float32)

    with pytest.raises(ValueError, match="shape"):
        Broken("x").rank("q", TEXTS, PRIOR, 2)
    with pytest.raises(ValueError, match="prior"):
        NoRerank("stock").rank("q", TEXTS, PRIOR[:2], 2)


def test_stock_kind_and_unknown_kind() -> None:
    assert load_ranker(ModelSpec(), stock_kind="none").kind == "none"
    with pytest.raises(ValueError, match="unknown ranker kind"):
        load_ranker(ModelSpec(), stock_kind="bm25")


def test_stock_cross_encoder_scores_one_float_per_pair() -> None:
    ranker = load_ranker(ModelSpec(), stock_kind="cross-encoder")
    scores = ranker.score("is wifi free?", TEXTS, PRIOR)
    assert scores.shape == (4,)
    assert scores.dtype == np.float32
    assert np.isfinite(scores).all()


def test_checkpoint_kind_comes_from_the_model_card(tmp_path: Path) -> None:
    write_model_card(tmp_path, component="ranker", kind="none", version="k-2")
    ranker = load_ranker(ModelSpec("k-2", f"file://{tmp_path}"), stock_kind="cross-encoder")
    assert (ranker.kind, ranker.version) == ("none", "k-2")
    write_model_card(tmp_path, component="retriever", kind="sentence-transformer")
    with pytest.raises(ModelError, match="expected a ranker"):
        load_ranker(ModelSpec("k-3", str(tmp_path)))
