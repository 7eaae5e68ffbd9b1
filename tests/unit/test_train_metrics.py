"""Metric functions against hand-computed values, and the pairwise judges."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from trainers.judges import (
    JudgedPair,
    LLMPairwiseJudge,
    judge_pairs,
    parse_winner,
)
from trainers.metrics import (
    graded_ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    reciprocal_rank,
    retrieval_metrics,
    swapped_verdict,
    win_rate,
)


def test_recall_precision_mrr_by_hand() -> None:
    ranking = ["a", "b", "c", "d"]
    assert recall_at_k(ranking, {"b", "z"}, 2) == 0.5
    assert precision_at_k(ranking, {"b", "c"}, 8) == 2 / 8
    assert reciprocal_rank(ranking, {"c"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(ranking, {"z"}) == 0.0


def test_ndcg_by_hand() -> None:
    gains = {"a": 1.0, "b": 0.5}
    ideal = 1.0 + 0.5 / math.log2(3)
    assert graded_ndcg_at_k(["a", "b"], gains, 8) == pytest.approx(1.0)
    assert graded_ndcg_at_k(["b", "a"], gains, 8) == pytest.approx(
        (0.5 + 1.0 / math.log2(3)) / ideal
    )
    assert graded_ndcg_at_k(["x"], {"x": 0.0}, 8) == 0.0


def test_aggregates_skip_queries_without_gold() -> None:
    out = retrieval_metrics([["a", "b"], ["c"]], [{"b"}, set()], ks=(75, 1))
    assert out == {
        "recall_at_75": 1.0,
        "recall_at_1": 0.0,
        "precision_at_1": 0.0,
        "mrr": 0.5,
        "queries": 1.0,
    }
    ranked = ranking_metrics([["a", "b"]], [{"b": 1.0, "a": 0.0}], k=2)
    assert ranked["precision_at_2"] == 0.5 and ranked["queries"] == 1.0


def test_position_swapping_cancels_a_first_position_bias() -> None:
    always_first = 1.0
    assert swapped_verdict(always_first, always_first) == 0.5
    assert swapped_verdict(1.0, 0.0) == 1.0  # wins in both orders
    assert win_rate([1.0, 0.5, 0.0, 1.0]) == 0.625
    assert win_rate([]) == 0.5


class _BiasedJudge:
    name, version = "biased", "1"

    def prefer(self, prompt: str, first: str, second: str, reference: str) -> float:
        return 1.0  # always the first reply


def test_judge_pairs_asks_both_orders() -> None:
    pairs = [JudgedPair("p", "cand", "serv", "ref")] * 3
    assert judge_pairs(_BiasedJudge(), pairs) == [0.5, 0.5, 0.5]


@pytest.mark.parametrize(
    ("text", "expected"),
    [('{"winner": "1"}', 1.0), ('Sure. {"winner": "2"}', 0.0), ('{"winner":"tie"}', 0.5)],
)
def test_parse_winner(text: str, expected: float) -> None:
    assert parse_winner(text) == expected


@pytest.mark.parametrize("text", ["reply 1 is better", '{"winner": "3"}', "{not json}"])
def test_parse_winner_is_strict(text: str) -> None:
    with pytest.raises(ValueError):
        parse_winner(text)


class _Fallback:
    name, version = "fallback", "1"

    def prefer(self, prompt: str, first: str, second: str, reference: str) -> float:
        return 0.5


def _llm_judge(handler: httpx.MockTransport) -> LLMPairwiseJudge:
    judge = LLMPairwiseJudge("http://judge.local/v1", "tiny", _Fallback(), retries=1)
    judge._client = httpx.Client(transport=handler)
    return judge


def test_llm_judge_reads_the_winner_and_prefers_the_better_reply() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        prompt = body["messages"][0]["content"]
        first = prompt.split("Reply 1:\n")[1].split("\n")[0]
        winner = "1" if first == "good" else "2"
        return httpx.Response(
            200, json={"choices": [{"message": {"content": json.dumps({"winner": winner})}}]}
        )

    judge = _llm_judge(httpx.MockTransport(answer))
    assert judge_pairs(judge, [JudgedPair("p", "good", "bad", "ref")]) == [1.0]
    assert judge.fallbacks == 0 and judge.version == "llm-pairwise-v1:tiny"


def test_llm_judge_falls_back_on_malformed_answers_and_errors() -> None:
    replies = iter(
        [httpx.Response(200, json={"choices": [{"message": {"content": "no idea"}}]})] * 2
    )

    def answer(request: httpx.Request) -> httpx.Response:
        return next(replies, httpx.Response(503))

    judge = _llm_judge(httpx.MockTransport(answer))
    assert judge.prefer("p", "a", "b", "r") == 0.5  # malformed twice -> fallback
    assert judge.prefer("p", "a", "b", "r") == 0.5  # 503 twice -> fallback
    assert judge.fallbacks == 2
