"""The promotion gate: a candidate replaces the serving version only when it is better.

Both versions are evaluated on the same eval slice in the same cycle (stored metrics of
the serving version were measured on an older, smaller slice). The candidate must beat
the serving version's gate metric by more than ``margin``. When the two are tied, a
tie-break metric decides, with the same margin. Tied means closer than ``tie_queries``
eval queries' worth (``tie_queries / queries``): on a small eval slice a metric moves in
steps of about 1/queries, and a smaller difference (a saturated Recall@75 on a small
knowledge base, one multi-gold query half found) is not evidence either way. With
``tie_queries = 0`` only an exact tie goes to the tie-break. A refusal keeps the candidate
registered with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from kernel.events import Component
from trainers.config import GateConfig

TIE_BREAK = {
    Component.RETRIEVER: "mrr",
    Component.RANKER: "ndcg_at_8",
    Component.GENERATOR: "reply_similarity",
}
_EPS = 1e-9


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict and the numbers behind it."""

    promote: bool
    metric: str
    candidate: float | None
    serving: float | None
    margin: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gate_metric(component: Component, config: GateConfig) -> str:
    return {
        Component.RETRIEVER: config.retriever_metric,
        Component.RANKER: config.ranker_metric,
        Component.GENERATOR: config.generator_metric,
    }[component]


def decide(
    component: Component,
    candidate: Mapping[str, float],
    serving: Mapping[str, float],
    config: GateConfig,
) -> GateDecision:
    """Promote iff candidate[metric] - serving[metric] > margin, or the two are tied and
    the tie-break metric beats the serving version's by more than margin.

    For the generator's ``win_rate`` (measured against the serving model) the serving
    side is 0.5 by definition: a model ties with itself.
    """
    metric = gate_metric(component, config)
    margin = config.margin
    if margin < 0 and not config.open_for_tests:
        raise ValueError(
            f"gate margin {margin} < 0 would promote every candidate; "
            "only tests may open the gate (GateConfig.open_for_tests)"
        )
    cand = candidate.get(metric)
    base = 0.5 if metric == "win_rate" else serving.get(metric)
    if cand is None:
        return GateDecision(
            False, metric, None, base, margin, f"{metric} not measured: no eval data"
        )
    if base is None:
        return GateDecision(False, metric, cand, None, margin, f"serving {metric} not measured")
    delta = cand - base
    if delta > margin:
        return GateDecision(
            True, metric, cand, base, margin, f"{metric} {cand:.4f} > {base:.4f} + margin {margin}"
        )
    n = candidate.get("queries") or candidate.get("judged_pairs")
    tolerance = config.tie_queries / n if n else 0.0
    if abs(delta) <= max(_EPS, tolerance - _EPS):
        tie = TIE_BREAK[component]
        c2, b2 = candidate.get(tie), serving.get(tie)
        if c2 is None or b2 is None:
            return GateDecision(
                False,
                metric,
                cand,
                base,
                margin,
                f"{metric} tied ({cand:.4f} vs {base:.4f}); no {tie} to break it",
            )
        promote = c2 - b2 > margin
        verdict = "beats" if promote else "does not beat"
        return GateDecision(
            promote,
            metric,
            cand,
            base,
            margin,
            f"{metric} tied ({cand:.4f} vs {base:.4f}, within {tolerance:.4f}); tie-break "
            f"{tie} {c2:.4f} {verdict} {b2:.4f} by more than margin {margin}",
        )
    return GateDecision(
        False,
        metric,
        cand,
        base,
        margin,
        f"{metric} {cand:.4f} does not beat serving {base:.4f} by more than {margin}",
    )
