"""Ranker: supervised fine-tuning on the agents' relevance labels.

Rows are (query, knowledge text, label) with RELEVANT 1.0, PARTIAL 0.5, IRRELEVANT 0.0.
Two architectures, both on sentence-transformers' trainers:

* ``cross-encoder`` (the default): a ``CrossEncoder`` initialised from MiniLM (the serving
  retriever's encoder) with a fresh one-logit head, ``BinaryCrossEntropyLoss`` with the
  graded label as a soft target. It needs a few hundred steps before it beats a cosine
  baseline (its head and pair attention start untrained).
* ``embedding``: a bi-encoder ranker scoring by cosine similarity, tuned with
  ``CoSENTLoss`` on the graded labels. It starts at the stock ranker's quality, so it
  improves from the first small cycle; pick it on CPU-only deployments.

``auto`` follows the serving ranker's kind when it is one of these, else embedding; the
first embedding ranker starts from the serving retriever (the order it has to beat).
Evaluation re-ranks a pool per eval query (its labelled objects plus word-overlap
distractors from the knowledge base, counted as irrelevant): Precision@8 and nDCG@8.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernel.checkpoints import ModelSpec
from kernel.lifecycle import read_model_card
from kernel.rankers import load_ranker
from kernel.shards import RankerRow
from trainers._internal import (
    TrainResult,
    common_args,
    kept,
    overlap_neighbours,
    quiet,
    resample,
    trainer_outcome,
    words,
)
from trainers.config import RankerConfig
from trainers.metrics import ranking_metrics
from trainers.retriever import NoTrainingData

KIND = "cross-encoder"
EMBEDDING = "embedding"
Scorer = Callable[[Sequence[tuple[str, str]]], Sequence[float]]


@dataclass(frozen=True)
class RankQuery:
    """One eval query, its labelled knowledge (id -> label) and the pool to re-rank."""

    query: str
    labels: dict[str, float]
    pool: list[str]


def training_rows(rows: Sequence[RankerRow], config: RankerConfig) -> list[dict[str, Any]]:
    """The kept rows with a query and a text, drawn in proportion to their judge weight
    (``resample``; ``use_weights=False``: each once)."""
    usable = [
        r for r in kept([dict(r) for r in rows], config.min_weight) if r["query"] and r["text"]
    ]
    return resample(usable, config.use_weights, config.seed)


def train_ranker(
    rows: Sequence[RankerRow],
    base_model: str,
    out_dir: Path,
    config: RankerConfig,
    *,
    architecture: str = KIND,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune a ranker of ``architecture`` from ``base_model``; save it to ``out_dir``."""
    from datasets import Dataset

    usable = training_rows(rows, config)
    if len(usable) < 2:
        raise NoTrainingData(f"ranker: {len(usable)} usable train rows")
    data = Dataset.from_dict(
        {
            "query": [r["query"] for r in usable],
            "text": [r["text"] for r in usable],
            "label": [float(r["label"]) for r in usable],
        }
    )
    batch = min(config.batch_size, len(usable))
    with tempfile.TemporaryDirectory(prefix="aitl-ranker-") as tmp:
        common = common_args(
            output_dir=tmp,
            epochs=config.epochs,
            max_steps=config.max_steps,
            batch_size=batch,
            learning_rate=config.learning_rate,
            seed=config.seed,
            progress=progress,
            warmup=config.warmup_ratio,
        )
        if architecture == EMBEDDING:
            trainer, model = _embedding_trainer(base_model, config, data, common)
        elif architecture == KIND:
            trainer, model = _cross_encoder_trainer(base_model, config, data, common)
        else:
            raise ValueError(f"unknown ranker architecture {architecture!r}")
        quiet(trainer, progress).train()
    steps, seconds, losses = trainer_outcome(trainer, batch)
    model.save(str(out_dir))
    return TrainResult(
        base_model=base_model,
        examples=steps * batch,
        steps=steps,
        seconds=seconds,
        loss_history=losses,
        extra={"train_rows": len(usable), "architecture": architecture},
    )


def _cross_encoder_trainer(
    base_model: str, config: RankerConfig, data: Any, common: dict[str, Any]
) -> tuple[Any, Any]:
    import torch
    from sentence_transformers import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    model = CrossEncoder(base_model, num_labels=1, max_length=config.max_length, device=_device())
    pos_weight = None
    if config.balance_labels:
        labels = data["label"]
        positive = sum(1 for x in labels if x >= config.relevant_at)
        if 0 < positive < len(labels):
            pos_weight = torch.tensor((len(labels) - positive) / positive, device=model.device)
    trainer = CrossEncoderTrainer(
        model=model,
        args=CrossEncoderTrainingArguments(**common),
        train_dataset=data,
        loss=BinaryCrossEntropyLoss(model, pos_weight=pos_weight),
    )
    return trainer, model


def _embedding_trainer(
    base_model: str, config: RankerConfig, data: Any, common: dict[str, Any]
) -> tuple[Any, Any]:
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import CoSENTLoss

    model = SentenceTransformer(base_model, device=_device())
    model.max_seq_length = config.max_length
    trainer = SentenceTransformerTrainer(
        model=model,
        args=SentenceTransformerTrainingArguments(**common),
        train_dataset=data,
        loss=CoSENTLoss(model),
    )
    return trainer, model


def choose_architecture(config: RankerConfig, serving_kind: str | None) -> str:
    """The architecture to train: the configured one, or (auto) the serving ranker's."""
    if config.architecture != "auto":
        return config.architecture
    # no trained ranker serves yet: the bi-encoder starts at stock quality, so a small
    # first cycle on CPU cannot fall below the retriever's order (a fresh cross-encoder
    # head can, and did on the demo data: P@8 0.0 after one cycle)
    return serving_kind if serving_kind in (KIND, EMBEDDING) else EMBEDDING


def knowledge_of(rows: Sequence[RankerRow]) -> dict[str, str]:
    return {r["knowledge_id"]: r["text"] for r in rows}


def rank_queries(
    rows: Sequence[RankerRow], kb: Sequence[tuple[str, str]], pool_size: int
) -> list[RankQuery]:
    """Group eval rows by request; pad each pool with word-overlap distractors from ``kb``."""
    grouped: dict[str, tuple[str, dict[str, float]]] = {}
    for r in rows:
        key = r.get("request_id") or r["query"]
        query, labels = grouped.setdefault(key, (r["query"], {}))
        labels[r["knowledge_id"]] = max(float(r["label"]), labels.get(r["knowledge_id"], 0.0))
    kb_words = [words(t) for _, t in kb]
    out = []
    for query, labels in grouped.values():
        extra = overlap_neighbours(query, kb, set(labels), pool_size - len(labels), kb_words)
        out.append(RankQuery(query, labels, sorted(labels) + extra))
    return out


def evaluate_ranker(
    scorer: Scorer,
    queries: Sequence[RankQuery],
    kb: Mapping[str, str],
    k: int = 8,
    relevant_at: float = 0.5,
) -> dict[str, float]:
    """Precision@k and nDCG@k of the scorer's order over each query's pool."""
    pairs = [(q.query, kb[kid]) for q in queries for kid in q.pool]
    scores = list(scorer(pairs)) if pairs else []
    rankings, i = [], 0
    for q in queries:
        s = scores[i : i + len(q.pool)]
        i += len(q.pool)
        order = sorted(range(len(q.pool)), key=lambda j: (-s[j], q.pool[j]))
        rankings.append([q.pool[j] for j in order])
    return ranking_metrics(rankings, [q.labels for q in queries], k, relevant_at)


def load_scorer(path: str | Path, *, kind: str | None = None) -> Scorer:
    """A (query, text) -> relevance scorer for a ranker checkpoint.

    cross-encoder and embedding checkpoints load here; any other kind serving knows
    (``causal-lm-judge``) is scored through :func:`kernel.rankers.load_ranker`.
    """
    if kind is None:
        kind = str(read_model_card(path)["kind"])
    if kind == KIND:
        from sentence_transformers import CrossEncoder

        model = CrossEncoder(str(path), device=_device())
        return lambda pairs: [float(x) for x in model.predict(list(pairs), show_progress_bar=False)]
    if kind in (EMBEDDING, "sentence-transformer"):
        return embedding_scorer(str(path))
    ranker = load_ranker(ModelSpec("baseline", str(path)))

    def score(pairs: Sequence[tuple[str, str]]) -> list[float]:
        out: list[float] = []
        for query, group in itertools.groupby(pairs, key=lambda p: p[0]):
            texts = [t for _, t in group]
            out.extend(float(x) for x in ranker.score(query, texts, [0.0] * len(texts)))
        return out

    return score


def embedding_scorer(model_path: str) -> Scorer:
    """Cosine similarity of a bi-encoder's embeddings: the stock ranker baseline."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device=_device())

    def score(pairs: Sequence[tuple[str, str]]) -> list[float]:
        if not pairs:
            return []
        texts = list(dict.fromkeys(t for pair in pairs for t in pair))
        vecs = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
        at = {t: i for i, t in enumerate(texts)}
        return [float(vecs[at[q]] @ vecs[at[d]]) for q, d in pairs]

    return score


def _device() -> str:
    from trainers._internal import cuda_available

    return "cuda" if cuda_available() else "cpu"
