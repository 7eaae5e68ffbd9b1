"""The promotion gate: only a candidate that beats the serving version by the margin."""

from __future__ import annotations

from streams.events import Component
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
