"""The benchmark's statistics, windows, oracle shards and README section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aitl.flywheel.report import METRICS, README_END, README_START, plot_cycles, update_readme
from aitl.flywheel.stats import Bootstrap
from serving.knowledge.dataset import Case


def _case(i: int, conversation: str, turns: int = 1) -> Case:
    history = [("U", f"q{i}")] * turns
    return Case(f"c{i}", i, history, f"q{i}", [f"kb-{i}"], "a", conversation_id=conversation)


def test_bootstrap_resamples_conversations_not_instances() -> None:
    # two conversations: one of 9 instances at 1.0, one of 1 instance at 0.0; resampling
    # conversations gives means of 0.0, 0.9 or 1.0 only, so the interval reaches 0.0
    groups = ["a"] * 9 + ["b"]
    values = [1.0] * 9 + [0.0]
    boot = Bootstrap(groups, draws=400, seed=1)
    lo, hi = boot.interval(values)
    assert lo == 0.0 and hi == 1.0
    # by instance it would hardly ever fall that far
    by_instance = Bootstrap([str(i) for i in range(10)], draws=400, seed=1).interval(values)
    assert by_instance[0] >= 0.6


def test_bootstrap_differences_are_paired() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(200)
    boot = Bootstrap([str(i // 2) for i in range(200)], seed=3)
    assert boot.difference(base + 0.1, base) == pytest.approx([0.1, 0.1])
    lo, hi = boot.interval(base)
    assert lo < base.mean() < hi
    rel = boot.relative(base * 1.2, base)
    assert rel == pytest.approx([0.2, 0.2])
    with pytest.raises(ValueError):
        boot.interval([1.0, 2.0])


def test_windows_cut_between_conversations() -> None:
    from aitl.flywheel.benchmark import windows

    cases = [_case(i, f"conv{i // 3}", turns=1 + i % 3) for i in range(30)]
    parts = windows(cases, 4)
    assert len(parts) == 4
    assert sum(len(p) for p in parts) == 30
    seen: set[str] = set()
    for p in parts:
        convs = {c.conversation for c in p}
        assert not convs & seen
        seen |= convs
        assert 6 <= len(p) <= 9


def test_oracle_shards_hold_gold_and_split_by_conversation(tmp_path: Path) -> None:
    from aitl.flywheel.benchmark import oracle_shards
    from aitl.flywheel.simulate import Suggestion
    from kernel.shards import ShardStore

    cases = [_case(i, f"conv{i // 2}") for i in range(20)]
    texts = {f"kb-{i}": f"text {i}" for i in range(20)}
    served = [
        Suggestion(f"r{i}", c.case_id, list(texts)[:5], [f"kb-{(i + 1) % 20}", f"kb-{i}"], [])
        for i, c in enumerate(cases)
    ]
    store = ShardStore(str(tmp_path))
    oracle_shards(store, cases, served, texts)
    ids = {s: {m.shard_id for m in store.manifests("ranker", s)} for s in ("train", "eval")}
    assert ids == {"train": {"oracle-all-ranker-train"}, "eval": {"oracle-all-ranker-eval"}}
    rows = {s: sum(m.rows for m in store.manifests("retriever", s)) for s in ("train", "eval")}
    assert rows == {"train": 18, "eval": 2}  # 10 conversations: the last one is eval


def _doc(tmp_path: Path) -> dict[str, Any]:
    row = {"recall_at_75": 0.5, "recall_at_8": 0.2, "precision_at_8": 0.1}
    row |= {"helpfulness": 0.4, "adoption": 0.1}
    better = {k: v * 1.5 for k, v in row.items()}
    pair = {m: [0.0, 0.1] for m in METRICS}
    cycle = better | {"cycle": 1, "instances": 9, "ci": pair, "components": {}}
    diff = {m: {"mean": 0.01, "min": -0.02, "max": 0.03} for m in METRICS}
    return {
        "dataset": {
            "name": "toy",
            "knowledge": 10,
            "replayed": 9,
            "held_out": 1,
            "replayed_conversations": 5,
            "held_out_conversations": 1,
        },
        "before": row,
        "after": better,
        "oracle": {k: v * 2 for k, v in row.items()},
        "ci": {
            "before": pair,
            "relative_gain": {m: [0.1, 0.9] for m in METRICS},
            "after_minus_oracle": {m: [-0.3, -0.1] for m in METRICS},
        },
        "cycles": [cycle],
        "cycle_seconds": 90.0,
        "flags": {"after_above_oracle": []},
        "agreement": {"immediate": 0.77, "deferred": 0.64},
        "judge_quality": {"precision": 0.8, "recall": 0.6, "removed_share": {"retriever": 0.1}},
        "generator": {"skipped": "no pairs"},
        "config": {"replies": "extractive", "helpfulness_judge": "reference", "ci": "95%"},
        "ablations": {
            "judge": {
                "with": better,
                "without": row,
                "weights_off": row,
                "by_seed": {"11": {}, "12": {}, "13": {}},
                "difference": diff,
                "weights_difference": diff,
                "mix": {"careful": 0.75, "careless": 0.25},
            }
        },
    }


def test_the_readme_results_section_is_rewritten_between_its_markers(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Results\n{README_START}\nstale text\n{README_END}\n\n## Next\n")
    assert update_readme(readme, doc)
    text = readme.read_text()
    assert "stale text" not in text and text.endswith("## Next\n")
    assert "| Recall@75 | 0.500 | 0.750 | +50.0% [+10.0%, +90.0%] | +11.7% | 1.000 |" in text
    assert "| with − without | +0.010 [-0.020, +0.030] |" in text
    assert "immediate 0.770 (paper 0.765), deferred 0.640 (paper 0.639)." in text
    assert "Generator: not measured (no pairs)." in text
    assert update_readme(readme, doc) and readme.read_text() == text  # idempotent
    plain = tmp_path / "OTHER.md"
    plain.write_text("no markers\n")
    assert not update_readme(plain, doc) and plain.read_text() == "no markers\n"


def test_the_cycle_plot_is_written(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    path = plot_cycles(doc, tmp_path / "q.png")
    assert path.stat().st_size > 10_000
    doc["cycles"][0]["oracle"] = doc["oracle"]  # the oracle's own cycles, when it has them
    assert plot_cycles(doc, tmp_path / "q2.png").stat().st_size > 10_000


def test_judge_quality_counts_rejections_of_corrupted_annotations() -> None:
    from aitl.flywheel.replay import Verdicts

    accepted = {"a": False, "b": False, "c": True, "d": True, "e": False}
    weight = {"a": 0.0, "b": 0.0, "c": 0.4, "d": 1.0, "e": 0.0}
    q = Verdicts(accepted, weight).quality({"a", "b", "c", "zz"})  # zz: never judged
    assert q["precision"] == pytest.approx(2 / 3)  # a, b caught; e a false alarm
    assert q["recall"] == pytest.approx(2 / 3)  # c slipped through
    assert q["corrupted"] == 3 and q["rejected"] == 3
    assert q["mean_weight_corrupted"] == pytest.approx(0.4 / 3)
    assert q["mean_weight_clean"] == pytest.approx(0.5)


def test_window_clock_puts_each_window_in_its_own_split_period() -> None:
    from aitl.flywheel.replay import window_clock
    from processors.split import SplitRule

    rule = SplitRule(period_s=3600.0)
    clock = window_clock([10, 20], 3600.0, now=1_000_000.0)
    for w, n in ((0, 10), (1, 20)):
        splits = [rule.split_for(clock(w, i)).value for i in range(n)]
        assert splits.count("EVAL") == n // 10  # the last tenth of every window
        assert splits[-1] == "EVAL" and splits[0] == "TRAIN"
    assert clock(1, 0).timestamp() - clock(0, 0).timestamp() == 3600.0
