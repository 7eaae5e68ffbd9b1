"""The held-out measurement: per-instance values, and means that are exactly theirs."""

from __future__ import annotations

import pytest

from aitl.flywheel.evaluate import measure, per_case
from aitl.flywheel.simulate import Suggestion
from serving.knowledge.dataset import Case


def _case(i: int, gold: list[str]) -> Case:
    return Case(f"c{i}", i, [("U", "q")], "q", gold, "ref")


def test_per_case_values_and_their_means_hand_computed() -> None:
    cases = [_case(0, ["a"]), _case(1, ["b", "x"])]
    sugg = [
        # retrieved has gold "a" at rank 2; the agent saw it in the ranked top 8
        Suggestion("r0", "c0", ["z", "a"], ["a", "z"], []),
        # one of two gold objects retrieved (at rank 3), none in what the agent saw
        Suggestion("r1", "c1", ["y", "z", "b"], ["y"], []),
    ]
    values = per_case(sugg, cases, replies=False)
    assert values == {
        "recall_at_75": [1.0, 0.5],
        "recall_at_8": [1.0, 0.0],
        "precision_at_8": [1 / 8, 0.0],
        "mrr": [0.5, 1 / 3],
    }
    means = measure(sugg, cases, replies=False)
    assert means == pytest.approx(
        {"recall_at_75": 0.75, "recall_at_8": 0.5, "precision_at_8": 1 / 16, "mrr": 5 / 12}
        | {"cases": 2.0}
    )
