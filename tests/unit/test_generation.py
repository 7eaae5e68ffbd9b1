"""The benchmark's generator comparison: per-case scoring, paired rates, a real tiny run."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aitl.flywheel.generation import (
    SCORER,
    generator_eval,
    outcome_rates,
    requests_of,
)
from aitl.flywheel.quality import Reply, reply_quality, reply_scores
from kernel.prompt import build_prompt
from kernel.shards import Manifest, ShardStore
from serving.knowledge.dataset import Case

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
KB = {
    "kb-refund": "Refunds go back to the original payment card within five business days.",
    "kb-sim": "A replacement SIM card is posted free of charge within three days.",
    "kb-roaming": "Mobile data abroad costs five euros per day with the travel pass.",
}
QUESTIONS = [
    ("kb-refund", "When do I get my refund?"),
    ("kb-sim", "My SIM card broke, what now?"),
    ("kb-roaming", "How much is data when I travel?"),
]


def _embed(texts: list[str]) -> np.ndarray:
    """Bag-of-words vectors hashed into 64 dims, L2-normalised: a stand-in embedder."""
    out = np.zeros((len(texts), 64))
    for i, text in enumerate(texts):
        for w in text.lower().split():
            out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1.0, norms)


def _case(i: int) -> Case:
    kid, question = QUESTIONS[i % len(QUESTIONS)]
    history = [("U", "hello"), ("S", "Hi, how can I help?"), ("U", question)]
    return Case(f"case-{i}", i, history, question, [kid], KB[kid])


def _write_pairs(root: Path, n: int) -> str:
    """``n`` judged preference rows shaped as the processors write them."""
    rows: list[dict[str, Any]] = []
    for i in range(n):
        kid, question = QUESTIONS[i % len(QUESTIONS)]
        rows.append(
            {
                "example_id": f"ex-{i}",
                "source_event_ids": [f"ev-{i}"],
                "case_id": f"case-{i}",
                "request_id": f"req-{i}",
                "event_time": T0 + timedelta(seconds=i),
                "weight": 1.0,
                "prompt": build_prompt(question, [(kid, KB[kid])], question),
                "chosen": f"{KB[kid]} [1]",
                "rejected": "Sorry, I cannot help with that. Please call us.",
                "rationale": "the rejected reply ignored the customer's question",
                "rationale_category": "INCOMPLETE",
                "knowledge_ids": [kid],
            }
        )
    store = ShardStore(str(root))
    manifest = Manifest(
        "gen-0", "generator", "train", n, T0.isoformat(), rows[-1]["event_time"].isoformat(), "j1"
    )
    store.write(manifest, rows)
    return str(root)


def test_reply_scores_are_per_case_and_reply_quality_is_their_mean() -> None:
    refs = ["refunds take five business days", "a new sim is posted free"]
    golds = [["kb-refund"], ["kb-sim"]]
    cands = [
        [Reply("refunds take five business days", ("kb-refund",)), Reply("no idea", ())],
        [Reply("call the shop", ("kb-refund",))],
    ]
    scores = reply_scores(cands, refs, golds, _embed)
    assert len(scores) == 2
    assert scores[0]["adoption"] == 1.0 and scores[0]["citation_precision"] == 1.0
    assert scores[0]["helpfulness"] == pytest.approx(0.8 * 1.0 + 0.2 * 1.0)
    assert scores[1]["adoption"] == 0.0 and scores[1]["citation_precision"] == 0.0
    mean = reply_quality(cands, refs, golds, _embed)
    for key in ("helpfulness", "adoption", "reference_similarity", "citation_precision"):
        assert mean[key] == pytest.approx((scores[0][key] + scores[1][key]) / 2)
    with pytest.raises(ValueError):
        reply_scores(cands, refs[:1], golds, _embed)


def test_outcome_rates_count_small_differences_as_ties() -> None:
    rates = outcome_rates([0.5, 0.5, 0.5, 0.5], [0.6, 0.504, 0.496, 0.4])
    assert rates == {"win_rate": 0.25, "loss_rate": 0.25, "tie_rate": 0.5}
    assert outcome_rates([], []) == {"win_rate": 0.0, "loss_rate": 0.0, "tie_rate": 0.0}
    with pytest.raises(ValueError):
        outcome_rates([0.1], [])


def test_requests_use_the_shown_knowledge_not_the_gold() -> None:
    case = _case(0)
    [(query, earlier, snippets)] = requests_of([case], [["kb-sim", "kb-x", "kb-roaming"]], KB)
    assert query == "When do I get my refund?"
    assert earlier == [("U", "hello"), ("S", "Hi, how can I help?")]
    assert [s.knowledge_id for s in snippets] == ["kb-sim", "kb-roaming"]


def test_too_few_pairs_skip_training(tmp_path: Path) -> None:
    root = _write_pairs(tmp_path / "shards", 3)
    cases = [_case(i) for i in range(2)]
    out = generator_eval(
        root, cases, [c.gold_ids for c in cases], KB, workdir=tmp_path / "w", embed=_embed
    )
    assert "3 usable preference pairs" in out["skipped"]
    assert out["train"]["pairs"] == 3 and out["train"]["steps"] == 0
    assert out["scorer"] == SCORER and out["per_case"] == {"stock": [], "trained": []}


@pytest.mark.slow
def test_real_tiny_run_trains_decodes_and_scores(tmp_path: Path) -> None:
    root = _write_pairs(tmp_path / "shards", 12)
    cases = [_case(i) for i in range(5)]
    said: list[str] = []
    out = generator_eval(
        root,
        cases,
        [c.gold_ids for c in cases],
        KB,
        max_cases=4,
        max_steps=2,
        workdir=tmp_path / "w",
        progress=said.append,
    )
    assert "skipped" not in out
    assert out["cases"] == 4 and out["train"]["pairs"] == 12 and out["train"]["steps"] == 2
    assert (tmp_path / "w" / "generator-checkpoint" / "adapter" / "adapter_config.json").exists()
    assert len(out["per_case"]["stock"]) == len(out["per_case"]["trained"]) == 4
    assert all(0.0 <= h <= 1.0 for h in out["per_case"]["trained"])
    rates = out["win_rate"] + out["loss_rate"] + out["tie_rate"]
    assert rates == pytest.approx(1.0)
    assert 0.0 <= out["stock"]["adoption"] <= 1.0
    assert out["seconds"]["train"] > 0 and out["seconds"]["decode"] > 0
    assert any("trained 2 steps" in m for m in said)
