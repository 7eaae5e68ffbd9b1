"""The promotion gate: only a candidate that beats the serving version by the margin."""

from __future__ import annotations

import pytest

from kernel.events import Component
from trainers.config import GateConfig
from trainers.gate import decide

R, K, G = Component.RETRIEVER, Component.RANKER, Component.GENERATOR


def test_gate_refuses_a_worse_candidate() -> None:
    d = decide(
        R, {"recall_at_75": 0.60, "mrr": 0.5}, {"recall_at_75": 0.70, "mrr": 0.4}, GateConfig()
    )
    assert not d.promote
    assert "does not beat" in d.reason and "0.6000" in d.reason


def test_gate_promotes_a_better_candidate() -> None:
    d = decide(R, {"recall_at_75": 0.75}, {"recall_at_75": 0.70}, GateConfig())
    assert d.promote and d.metric == "recall_at_75"


def test_gain_within_the_margin_is_refused() -> None:
    cfg = GateConfig(margin=0.02)
    assert not decide(K, {"precision_at_8": 0.51}, {"precision_at_8": 0.50}, cfg).promote
    assert decide(K, {"precision_at_8": 0.53}, {"precision_at_8": 0.50}, cfg).promote


def test_exact_tie_goes_to_the_tie_break_metric() -> None:
    better = decide(
        R, {"recall_at_75": 1.0, "mrr": 0.9}, {"recall_at_75": 1.0, "mrr": 0.2}, GateConfig()
    )
    assert better.promote and "tie-break mrr" in better.reason
    same = decide(
        R, {"recall_at_75": 1.0, "mrr": 0.2}, {"recall_at_75": 1.0, "mrr": 0.2}, GateConfig()
    )
    assert not same.promote and "tied" in same.reason


def test_generator_win_rate_is_against_half() -> None:
    cfg = GateConfig(margin=0.05)
    assert decide(G, {"win_rate": 0.6}, {}, cfg).promote
    refused = decide(G, {"win_rate": 0.54}, {"win_rate": 0.5}, cfg)
    assert not refused.promote and refused.serving == 0.5


def test_missing_metric_is_refused_with_a_reason() -> None:
    d = decide(R, {}, {"recall_at_75": 0.7}, GateConfig())
    assert not d.promote and "no eval data" in d.reason


def test_gate_metric_is_configurable() -> None:
    cfg = GateConfig(retriever_metric="recall_at_8")
    d = decide(
        R, {"recall_at_75": 0.5, "recall_at_8": 0.4}, {"recall_at_75": 0.9, "recall_at_8": 0.3}, cfg
    )
    assert d.promote and d.metric == "recall_at_8"


def test_a_difference_smaller_than_one_eval_query_is_a_tie() -> None:
    # 23 eval queries: one multi-gold query half found is 0.0217 of Recall@75
    cand = {"recall_at_75": 0.9783, "mrr": 0.80, "queries": 23.0}
    serving = {"recall_at_75": 1.0, "mrr": 0.60, "queries": 23.0}
    d = decide(R, cand, serving, GateConfig())
    assert d.promote and "tied" in d.reason and "tie-break mrr 0.8000" in d.reason
    # the tie-break must still be won
    assert not decide(R, cand | {"mrr": 0.55}, serving, GateConfig()).promote
    # exact ties only: the same numbers are a refusal
    assert not decide(R, cand, serving, GateConfig(tie_queries=0)).promote
    # a whole query's worth or more is a real difference
    worse = cand | {"recall_at_75": 1.0 - 1 / 23}
    d = decide(R, worse, serving, GateConfig())
    assert not d.promote and "does not beat" in d.reason
    # more eval queries, finer resolution: the same gap is no longer a tie
    many = {k: v for k, v in cand.items()} | {"queries": 128.0}
    assert not decide(R, many, serving | {"queries": 128.0}, GateConfig()).promote


def test_generator_ties_are_counted_in_judged_pairs() -> None:
    # 3.5 wins of 8 pairs: half a pair from an even split, a tie; the similarity decides
    cand = {"win_rate": 0.4375, "judged_pairs": 8.0, "reply_similarity": 0.61}
    assert decide(G, cand, {"reply_similarity": 0.55}, GateConfig()).promote
    lost = cand | {"win_rate": 0.375}  # a whole pair lost: refused
    assert not decide(G, lost, {"reply_similarity": 0.55}, GateConfig()).promote


def test_a_negative_margin_is_refused_unless_a_test_opens_the_gate() -> None:
    from pydantic import ValidationError

    from trainers.config import TrainerSettings

    cand, serving = {"recall_at_75": 0.1}, {"recall_at_75": 0.9}
    with pytest.raises(ValueError, match="only tests may open the gate"):
        decide(R, cand, serving, GateConfig(margin=-1.0))
    assert decide(R, cand, serving, GateConfig(margin=-1.0, open_for_tests=True)).promote
    with pytest.raises(ValidationError):
        TrainerSettings(margin=-0.1)
