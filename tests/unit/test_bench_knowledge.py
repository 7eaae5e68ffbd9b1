"""The knowledge-at-scale benchmark's own arithmetic: rows, exact truth, recall, merging."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench import knowledge
from serving.knowledge.dataset import Case, Dataset, KnowledgeObject
from tests.unit.test_index import WordEncoder


def test_synthetic_rows_do_not_depend_on_how_they_are_paged() -> None:
    whole = knowledge.synthetic_vectors(0, knowledge.PAGE + 20)
    part = knowledge.synthetic_vectors(knowledge.PAGE - 5, 15)
    assert np.array_equal(part, whole[knowledge.PAGE - 5 : knowledge.PAGE + 10])
    assert np.allclose(np.linalg.norm(whole, axis=1), 1.0, atol=1e-5)
    queries = knowledge.synthetic_vectors(0, 4, seed=1)
    assert not np.allclose(queries, whole[:4])


def test_exact_top_is_the_brute_force_top_across_pages() -> None:
    size = knowledge.PAGE + 300
    queries = knowledge.synthetic_vectors(0, 3, seed=1)
    sims = queries @ knowledge.synthetic_vectors(0, size).T
    expected = np.argsort(-sims, axis=1)[:, :10]
    got = knowledge.exact_top(queries, size, k=10)
    assert [set(r) for r in got.tolist()] == [set(r) for r in expected.tolist()]


def test_an_exact_engine_has_recall_one_and_the_numbers_are_there() -> None:
    result = knowledge.measure_one("local", 400, queries=5)
    assert result["recall_vs_exact"] == 1.0
    assert result["p99"] >= result["p50"] > 0
    assert result["rss_mb"] > 0


def test_hybrid_reports_both_orders_on_a_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = [
        KnowledgeObject("kb-cot", "faq", "Cot?", "A cot costs fifteen dollars", "Acorn"),
        KnowledgeObject("kb-pool", "faq", "Pool?", "The pool opens at nine", "Acorn"),
    ]
    cases = [Case("c1", 0, [("U", "how much is a cot")], "how much is a cot", ["kb-cot"], "")]
    monkeypatch.setattr("serving.retriever.load_encoder", lambda spec, model: WordEncoder("stock"))
    out = knowledge.hybrid(Dataset("tiny", objects, cases), "any", k=2, rank_k=1)
    assert out["cases"] == 1
    assert out["hybrid_rrf"]["recall_at_2"] == 1.0
    assert set(out["dense"]) == {"recall_at_2", "recall_at_1", "precision_at_1"}


def test_results_merge_into_serving_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(knowledge, "RESULTS", tmp_path)
    before = {"suggest_rps": 1, "hybrid": 0, "retrieval_by_size": {"edge": {"10": 1, "20": 2}}}
    (tmp_path / "serving.json").write_text(json.dumps(before))
    knowledge.merge_into_serving(
        {"hybrid": {"dense": {}}, "retrieval_by_size": {"edge": {"20": 3}, "local": {"10": 4}}}
    )
    assert json.loads((tmp_path / "serving.json").read_text()) == {
        "suggest_rps": 1,
        "hybrid": {"dense": {}},
        "retrieval_by_size": {"edge": {"10": 1, "20": 3}, "local": {"10": 4}},
    }


def test_hybrid_is_skipped_cleanly_without_the_hotel_data(tmp_path: Path) -> None:
    assert knowledge.hotel_hybrid(hotel=tmp_path) == {"skipped": f"no data at {tmp_path}"}
