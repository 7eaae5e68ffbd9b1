"""Retriever: sentence-transformers fine-tuning with MultipleNegativesRankingLoss.

Each train row is (query, positive knowledge text, hard negatives = objects the agent
marked irrelevant). MNRL scores the positive against every other text in the batch plus
the hard negatives; ``BatchSamplers.NO_DUPLICATES`` keeps a text from appearing twice in
a batch, where it would be a false in-batch negative. Evaluation ranks a whole candidate
knowledge base per eval query: Recall@75, Recall@8, Precision@8, MRR.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kernel.errors import DataError
from kernel.shards import RetrieverRow
from trainers._internal import TrainResult, common_args, kept, quiet, resample, trainer_outcome
from trainers.config import RetrieverConfig
from trainers.metrics import retrieval_metrics

KIND = "sentence-transformer"


class NoTrainingData(DataError):
    """The snapshot has no usable train rows for this component."""


@dataclass(frozen=True)
class EvalQuery:
    """One eval query and the knowledge ids the agents marked relevant for it."""

    query: str
    gold: frozenset[str]


def training_examples(
    rows: Sequence[RetrieverRow], config: RetrieverConfig
) -> dict[str, list[str]]:
    """Columns (anchor, positive, negative_1..n) for MNRL; short rows get padded negatives.
    Rows are drawn in proportion to their judge weight (``resample``, ``use_weights``)."""
    rng = random.Random(config.seed)
    usable = [
        r
        for r in kept([dict(r) for r in rows], config.min_weight)
        if r["query"] and r["positive_text"]
    ]
    pool = sorted(
        {r["positive_text"] for r in usable}
        | {t for r in usable for t in r["negative_texts"] or []}
    )
    columns: dict[str, list[str]] = {"anchor": [], "positive": []}
    for i in range(config.hard_negatives):
        columns[f"negative_{i + 1}"] = []
    for r in resample(usable, config.use_weights, config.seed):
        negatives = [t for t in (r["negative_texts"] or []) if t != r["positive_text"]]
        negatives = list(dict.fromkeys(negatives))[: config.hard_negatives]
        if len(negatives) < config.hard_negatives:
            spare = [t for t in pool if t != r["positive_text"] and t not in negatives]
            if len(spare) < config.hard_negatives - len(negatives):
                continue  # too little knowledge to build a hard-negative column
            negatives += rng.sample(spare, config.hard_negatives - len(negatives))
        columns["anchor"].append(r["query"])
        columns["positive"].append(r["positive_text"])
        for i, text in enumerate(negatives):
            columns[f"negative_{i + 1}"].append(text)
    return columns


def train_retriever(
    rows: Sequence[RetrieverRow],
    base_model: str,
    out_dir: Path,
    config: RetrieverConfig,
    *,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune ``base_model`` on the rows and save it to ``out_dir``."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    columns = training_examples(rows, config)
    n = len(columns["anchor"])
    if n < 2:
        raise NoTrainingData(f"retriever: {n} usable train rows (in-batch negatives need >= 2)")
    model = SentenceTransformer(base_model, device=_device())
    model.max_seq_length = config.max_seq_length
    with tempfile.TemporaryDirectory(prefix="aitl-retriever-") as tmp:
        args = SentenceTransformerTrainingArguments(
            **common_args(
                output_dir=tmp,
                epochs=config.epochs,
                max_steps=config.max_steps,
                batch_size=min(config.batch_size, n),
                learning_rate=config.learning_rate,
                seed=config.seed,
                progress=progress,
                warmup=config.warmup_ratio,
            ),
            batch_sampler=BatchSamplers.NO_DUPLICATES,
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_dict(columns),
            loss=MultipleNegativesRankingLoss(model),
        )
        quiet(trainer, progress).train()
    steps, seconds, losses = trainer_outcome(trainer, args.per_device_train_batch_size)
    model.save(str(out_dir))
    pairs = steps * args.per_device_train_batch_size
    return TrainResult(
        base_model=base_model,
        examples=min(pairs, int(n * config.epochs)) if config.max_steps < 0 else pairs,
        steps=steps,
        seconds=seconds,
        loss_history=losses,
        extra={"train_rows": n, "hard_negatives": config.hard_negatives},
    )


def eval_queries(rows: Sequence[RetrieverRow]) -> list[EvalQuery]:
    """Group eval rows by request (else query): one query, all its positive ids as gold."""
    grouped: dict[str, tuple[str, set[str]]] = {}
    for r in rows:
        key = r.get("request_id") or r["query"]
        query, gold = grouped.setdefault(key, (r["query"], set()))
        gold.add(r["positive_id"])
    return [EvalQuery(q, frozenset(g)) for q, g in grouped.values() if g]


def knowledge_of(rows: Sequence[RetrieverRow]) -> dict[str, str]:
    """Every knowledge object a retriever row mentions (positives and hard negatives)."""
    kb: dict[str, str] = {}
    for r in rows:
        kb.setdefault(r["positive_id"], r["positive_text"])
        for kid, text in zip(r["negative_ids"] or [], r["negative_texts"] or [], strict=False):
            kb.setdefault(kid, text)
    return kb


def rank_knowledge(
    model: Any,
    queries: Sequence[str],
    kb: Sequence[tuple[str, str]],
    top_k: int,
    *,
    progress: bool = False,
    batch_size: int = 64,
) -> list[list[str]]:
    """Top ``top_k`` knowledge ids per query by cosine similarity."""
    if not kb or not queries:
        return [[] for _ in queries]
    doc = model.encode(
        [t for _, t in kb],
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=progress,
    )
    qv = model.encode(
        list(queries), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
    )
    scores = np.asarray(qv) @ np.asarray(doc).T
    k = min(top_k, len(kb))
    ids = [kid for kid, _ in kb]
    out = []
    for row in scores:
        top = np.argpartition(-row, k - 1)[:k]
        top = top[np.argsort(-row[top], kind="stable")]
        out.append([ids[i] for i in top])
    return out


def evaluate_retriever(
    model: Any,
    queries: Sequence[EvalQuery],
    kb: Sequence[tuple[str, str]],
    ks: Sequence[int] = (75, 8),
    *,
    progress: bool = False,
) -> dict[str, float]:
    """Recall@k per k, Precision@min(k) and MRR over the whole knowledge base.

    MRR is computed over the full ranking (every object ranked), so a gold object
    outside the top-k still counts.
    """
    if isinstance(model, str | Path):
        model = load_retriever(model)
    rankings = rank_knowledge(model, [q.query for q in queries], kb, len(kb), progress=progress)
    return retrieval_metrics(rankings, [q.gold for q in queries], ks)


def load_retriever(path: str | Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device=_device())


def _device() -> str:
    from trainers._internal import cuda_available

    return "cuda" if cuda_available() else "cpu"
