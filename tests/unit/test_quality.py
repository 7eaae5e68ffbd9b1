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


def test_the_readme_results_section_is_rewritten_between_its_markers(tmp_path: Path) -> None:
    from aitl.flywheel.report import README_END, README_START, update_readme

    row = {"recall_at_75": 0.5, "recall_at_8": 0.2, "precision_at_8": 0.1}
    row |= {"helpfulness": 0.4, "adoption": 0.1}
    better = {k: v * 1.5 for k, v in row.items()}
    doc = {
        "dataset": {"name": "toy", "knowledge": 10, "replayed": 9, "held_out": 1},
        "before": row,
        "after": better,
        "oracle": {k: v * 2 for k, v in row.items()},
        "cycle_seconds": 90.0,
        "config": {
            "replies": "extractive",
            "helpfulness_judge": "reference similarity",
            "ablation_components": {"judge": ["retriever", "ranker"]},
        },
        "ablations": {
            "judge": {"with": better, "without": row},
            "missing_knowledge": {"immediate": better, "deferred": row},
        },
    }
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Results\n{README_START}\nold\n{README_END}\n\n## Next\n")
    assert update_readme(readme, doc)
    text = readme.read_text()
    assert "old" not in text and text.endswith("## Next\n")
    assert "| Recall@75 | 0.500 | 0.750 | +50.0% | +11.7% | 1.000 | +50.0% |" in text
    row_text = "| 25% careless agents, without it | retriever + ranker | 0.500 | 0.200 | 0.100 |"
    assert row_text in text
    assert "| missing knowledge annotated deferred | retriever | 0.500 |" in text
    assert update_readme(readme, doc) and readme.read_text() == text  # idempotent
    plain = tmp_path / "OTHER.md"
    plain.write_text("no markers\n")
    assert not update_readme(plain, doc) and plain.read_text() == "no markers\n"


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


def test_the_judge_ablation_is_reported_per_seed_as_with_minus_without(tmp_path: Path) -> None:
    from aitl.flywheel.benchmark import BenchmarkConfig, judge_by_seed

    cfg = BenchmarkConfig(dataset=tmp_path, out=tmp_path / "x.json", seed=11, judge_seeds=(12,))
    row = {"recall_at_75": 0.9, "recall_at_8": 0.7, "precision_at_8": 0.3}
    row |= {"helpfulness": 0.6, "adoption": 0.1}
    results = {
        "judge_with": row,
        "judge_without": {k: v - 0.01 for k, v in row.items()},
        "judge_with_seed12": row,
        "judge_without_seed12": {k: v + 0.02 for k, v in row.items()},
    }
    out = judge_by_seed(cfg, results)
    assert set(out) == {"11", "12"}
    assert out["11"]["difference"]["recall_at_75"] == pytest.approx(0.01)
    assert out["12"]["difference"]["precision_at_8"] == pytest.approx(-0.02)
    assert out["12"]["without"]["adoption"] == pytest.approx(0.12)


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
