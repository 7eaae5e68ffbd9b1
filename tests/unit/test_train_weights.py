"""The judge's weights reach the losses: rows are drawn in proportion to their weight."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from trainers._internal import resample
from trainers.config import GeneratorConfig, RankerConfig, RetrieverConfig
from trainers.generator import preference_examples
from trainers.ranker import training_rows
from trainers.retriever import training_examples


def retriever_rows(weights: list[float]) -> list[dict[str, Any]]:
    return [
        {
            "query": f"query {i}",
            "positive_id": f"kb-{i}",
            "positive_text": f"text {i}",
            "negative_ids": [f"kb-n{i}"],
            "negative_texts": [f"negative {i}"],
            "weight": w,
        }
        for i, w in enumerate(weights)
    ]


HALF = [1.0] * 50 + [0.1] * 50


def counts(anchors: list[str]) -> tuple[int, int]:
    """(draws of the weight-1.0 rows, draws of the weight-0.1 rows)."""
    c = Counter(int(a.split()[1]) for a in anchors)
    return sum(c[i] for i in range(50)), sum(c[i] for i in range(50, 100))


def test_low_weight_rows_are_drawn_far_less_often() -> None:
    cols = training_examples(retriever_rows(HALF), RetrieverConfig())
    assert len(cols["anchor"]) == 100  # as many rows as were kept
    heavy, light = counts(cols["anchor"])
    assert heavy + light == 100 and heavy >= 5 * light  # expected 1.0 : 0.1
    assert len({len(v) for v in cols.values()}) == 1  # the columns stay aligned


def test_without_weights_every_row_counts_once() -> None:
    cols = training_examples(retriever_rows(HALF), RetrieverConfig(use_weights=False))
    assert counts(cols["anchor"]) == (50, 50)
    assert cols["anchor"] == [f"query {i}" for i in range(100)]


def test_the_draw_is_deterministic_by_seed() -> None:
    rows = retriever_rows([1.0, 0.3, 0.7, 0.05, 0.9] * 20)
    a = training_examples(rows, RetrieverConfig(seed=1))
    assert a == training_examples(rows, RetrieverConfig(seed=1))
    draws = {tuple(training_examples(rows, RetrieverConfig(seed=s))["anchor"]) for s in range(8)}
    assert len(draws) > 1  # the seed moves the draw


def test_equal_weights_keep_the_rows_as_they_were() -> None:
    rows = retriever_rows([0.6] * 30)
    assert resample(rows, True, 3) == rows
    assert resample(retriever_rows([1.0] * 7), True, 0) == retriever_rows([1.0] * 7)


def test_zero_weight_rows_are_still_dropped() -> None:
    cols = training_examples(retriever_rows([1.0, 0.0, 1.0]), RetrieverConfig(use_weights=False))
    assert cols["anchor"] == ["query 0", "query 2"]


@pytest.mark.parametrize("seed", range(5))
def test_expected_counts_are_proportional(seed: int) -> None:
    rows = retriever_rows([4.0, 1.0, 1.0, 2.0])
    got = Counter(r["query"] for r in resample(rows, True, seed))
    assert got["query 0"] == 2 and got["query 3"] == 1  # 4 * w / 8 exactly
    assert got["query 1"] + got["query 2"] == 1


def test_ranker_and_generator_rows_are_weighted_too() -> None:
    ranker = [
        {"query": f"q {i}", "knowledge_id": f"k{i}", "text": f"t {i}", "label": 1.0, "weight": w}
        for i, w in enumerate(HALF)
    ]
    drawn = training_rows(ranker, RankerConfig())  # type: ignore[arg-type]
    assert len(drawn) == 100 and counts([r["query"] for r in drawn])[0] >= 80
    flat = training_rows(ranker, RankerConfig(use_weights=False))  # type: ignore[arg-type]
    assert counts([r["query"] for r in flat]) == (50, 50)

    class Tok:
        chat_template = None

    pairs = [
        {"prompt": f"p {i}", "chosen": f"c {i}", "rejected": f"r {i}", "weight": w}
        for i, w in enumerate(HALF)
    ]
    cols = preference_examples(pairs, Tok(), GeneratorConfig(rationale_boost=1))  # type: ignore[arg-type]
    assert len(cols["prompt"]) == 100 and counts(cols["prompt"])[0] >= 80
    off = preference_examples(pairs, Tok(), GeneratorConfig(use_weights=False))  # type: ignore[arg-type]
    assert counts(off["prompt"]) == (50, 50)
