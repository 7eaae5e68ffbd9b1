"""Benchmark metric functions against hand-computed examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aitl.flywheel.quality import Reply, citation_precision, reply_quality

VOCAB = ["roaming", "costs", "five", "euro", "wifi", "free"]


def bag_embed(texts: list[str]) -> np.ndarray:
    """A tiny, exact embedder: normalised bag of known words."""
    rows = np.array([[t.lower().split().count(w) for w in VOCAB] for t in texts], dtype=float)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms == 0, 1, norms)


def test_citation_precision() -> None:
    assert citation_precision(["a", "b"], ["a", "c"]) == 0.5
    assert citation_precision([], ["a"]) == 0.0


def test_reply_quality_hand_computed() -> None:
    cases = [
        [Reply("roaming costs five euro", ("k1",)), Reply("wifi free", ("k9",))],
        [Reply("wifi free", ("k2", "k3")), Reply("roaming", ())],
    ]
    refs = ["roaming costs five euro", "free wifi"]
    golds = [["k1"], ["k2"]]
    got = reply_quality(cases, refs, golds, bag_embed)
    # case 1: A is identical to the reference: cos 1, citation 1 -> 0.8 + 0.2 = 1.0, adopted
    # case 2: A ("wifi free") has F1 1.0 vs "free wifi": cos 1, citation 1/2 -> 0.9, adopted
    assert got["helpfulness"] == pytest.approx((1.0 + 0.9) / 2)
    assert got["adoption"] == 1.0
    assert got["citation_precision"] == pytest.approx(0.75)


def test_adoption_threshold() -> None:
    # F1 of "roaming" vs "roaming costs five euro": p=1, r=1/4 -> 0.4: exactly the threshold
    got = reply_quality([[Reply("roaming", ())]], ["roaming costs five euro"], [["k"]], bag_embed)
    assert got["adoption"] == 1.0
    got = reply_quality([[Reply("wifi", ())]], ["roaming costs five euro"], [["k"]], bag_embed)
    assert got["adoption"] == 0.0 and got["helpfulness"] == 0.0


def test_gains_and_gap_closed() -> None:
    from aitl.flywheel.report import gap_closed, relative_gain

    assert relative_gain(0.5, 0.6) == pytest.approx(0.2)
    assert relative_gain(0.0, 0.6) is None
    assert gap_closed(0.5, 0.6, 0.7) == pytest.approx(0.5)
    assert gap_closed(0.5, 0.6, 0.5) is None


def test_judge_summary_reads_the_processors_metrics() -> None:
    from prometheus_client import CollectorRegistry, Counter, generate_latest

    from aitl.flywheel.judging import judge_summary, judge_table

    reg = CollectorRegistry()
    verdicts = Counter("aitl_judge_verdicts", "v", ["annotation_type", "outcome"], registry=reg)
    reasons = Counter("aitl_judge_reasons", "r", ["annotation_type", "reason"], registry=reg)
    verdicts.labels("PREFERENCE", "accepted").inc(6)
    verdicts.labels("PREFERENCE", "rejected").inc(2)
    verdicts.labels("RELEVANCE", "rejected").inc(2)
    reasons.labels("PREFERENCE", "preference_mismatch").inc(2)
    reasons.labels("RELEVANCE", "relevance_contradicts_reply").inc(2)
    reasons.labels("PREFERENCE", "fatigue_default_run").inc(1)
    got = judge_summary(generate_latest(reg).decode())
    assert got["verdicts"] == {
        "PREFERENCE": {"accepted": 6, "rejected": 2},
        "RELEVANCE": {"rejected": 2},
    }
    assert got["total"] == 10 and got["rejection_rate"] == pytest.approx(0.4)
    assert list(got["reasons"])[-1] == "fatigue_default_run"
    assert judge_table(got).row_count == 2


def test_the_demo_section_comes_from_the_demo_timings(tmp_path: Path) -> None:
    from aitl.flywheel import report
    from aitl.flywheel.demo import STAGES, demo_timings

    doc = {
        "timings_s": {"total_s": 540.4, "startup_s": 61.0, "simulate_s": 200.2},
        "generator_tokens_per_s": 31.234,
        "cases": {"replayed": 150, "held_out": 30},
        "before": {"recall_at_8": 0.5},
        "after": {"recall_at_8": 0.6},
        "promoted": {"retriever": "retriever-1"},
    }
    timings = demo_timings(doc)
    assert timings["total_s"] == 540.4 and timings["stages"] == {"startup": 61.0, "simulate": 200.2}
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{report.DEMO_START}\nold\n{report.DEMO_END}\ntail\n")
    assert report.replace_section(
        readme, report.DEMO_START, report.DEMO_END, report.demo_markdown(timings, STAGES)
    )
    text = readme.read_text()
    assert "old" not in text and text.endswith("tail\n")
    assert "**9.0 min**" in text and "31.2 new tokens/s" in text
    assert "| Recall@8 | 0.500 | 0.600 | +20.0% |" in text
    assert "| live suggestions annotated by the simulated agents | 200 |" in text
