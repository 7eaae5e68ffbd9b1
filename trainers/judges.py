"""Pairwise judges for the generator's win rate against the serving model.

A judge answers "is the first reply better than the second?" with 1, 0.5 (tie) or 0.
Each pair is asked in both orders and the answers combined (``metrics.swapped_verdict``)
to cancel position bias. ``LLMPairwiseJudge`` asks an OpenAI-compatible chat endpoint
(the Virtual Judge's LLM backend) with a versioned prompt and strict JSON parsing, and
falls back to ``ReferenceSimilarityJudge`` (which reply is semantically closer to the
agent's sent reply) for any pair it cannot judge. The judge's version is lineage.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from trainers.metrics import swapped_verdict

PAIRWISE_PROMPT_VERSION = "pairwise-v1"
PAIRWISE_PROMPT = """You compare two replies a support assistant drafted for a customer.
Judge which reply is more helpful, correct and faithful to the knowledge in the context.
The reply the human agent actually sent is given as a reference of a good answer.

Context and customer message:
{prompt}

Reference reply (sent by the agent):
{reference}

Reply 1:
{first}

Reply 2:
{second}

Answer with JSON only: {{"winner": "1"}}, {{"winner": "2"}} or {{"winner": "tie"}}."""


@dataclass(frozen=True)
class JudgedPair:
    """One item to judge: the candidate's and the serving model's reply to a prompt."""

    prompt: str
    candidate: str
    serving: str
    reference: str


class PairwiseJudge(Protocol):
    name: str
    version: str

    def prefer(self, prompt: str, first: str, second: str, reference: str) -> float:
        """1.0 if ``first`` is better, 0.0 if ``second`` is, 0.5 for a tie."""
        ...


class ReferenceSimilarityJudge:
    """Prefers the reply whose embedding is closer (cosine) to the agent's sent reply."""

    name = "reference-similarity"

    def __init__(self, model: Any, model_name: str = "", tie_eps: float = 1e-3) -> None:
        self.model = model
        self.version = f"ref-sim-1:{model_name}" if model_name else "ref-sim-1"
        self.tie_eps = tie_eps
        self._cache: dict[str, Any] = {}

    @classmethod
    def from_path(cls, path: str, name: str = "") -> ReferenceSimilarityJudge:
        from sentence_transformers import SentenceTransformer

        return cls(SentenceTransformer(path, device="cpu"), name or path)

    def prepare(self, texts: Sequence[str]) -> None:
        """Embed many texts in one batch (the judge calls then hit the cache)."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            vecs = self.model.encode(todo, normalize_embeddings=True, convert_to_numpy=True)
            self._cache.update(zip(todo, vecs, strict=True))

    def similarity(self, text: str, reference: str) -> float:
        self.prepare([text, reference])
        return float(self._cache[text] @ self._cache[reference])

    def prefer(self, prompt: str, first: str, second: str, reference: str) -> float:
        a, b = self.similarity(first, reference), self.similarity(second, reference)
        if abs(a - b) <= self.tie_eps:
            return 0.5
        return 1.0 if a > b else 0.0


class LLMPairwiseJudge:
    """An OpenAI-compatible chat endpoint as judge; falls back per pair on any failure."""

    name = "llm-pairwise"

    def __init__(
        self,
        url: str,
        model: str,
        fallback: PairwiseJudge,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        retries: int = 2,
    ) -> None:
        base = url.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else f"{base}/chat/completions"
        self.model = model
        self.fallback = fallback
        self.version = f"llm-{PAIRWISE_PROMPT_VERSION}:{model}"
        self.retries = retries
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers)
        self.fallbacks = 0
        self.calls = 0

    def prefer(self, prompt: str, first: str, second: str, reference: str) -> float:
        content = PAIRWISE_PROMPT.format(
            prompt=prompt, reference=reference, first=first, second=second
        )
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "temperature": 0,
        }
        self.calls += 1
        for _ in range(self.retries + 1):
            try:
                resp = self._client.post(self.url, json=body)
            except httpx.HTTPError:
                continue  # timeout or connection error: try again
            if resp.status_code >= 500:
                continue
            if resp.status_code >= 400:
                break  # our request is wrong; asking again will not help
            try:
                return parse_winner(resp.json()["choices"][0]["message"]["content"])
            except (ValueError, KeyError, IndexError, TypeError):
                continue  # malformed answer: ask again
        self.fallbacks += 1
        return self.fallback.prefer(prompt, first, second, reference)


_JSON = re.compile(r"\{[^{}]*\}")


def parse_winner(text: str) -> float:
    """Strictly parse ``{"winner": "1" | "2" | "tie"}``; anything else raises ValueError."""
    match = _JSON.search(text)
    if match is None:
        raise ValueError(f"no JSON object in judge reply {text[:80]!r}")
    data = json.loads(match.group(0))
    winner = str(data.get("winner", "")).strip().lower()
    verdicts = {"1": 1.0, "2": 0.0, "tie": 0.5}
    if winner not in verdicts:
        raise ValueError(f"judge winner {winner!r} is not 1, 2 or tie")
    return verdicts[winner]


def judge_pairs(judge: PairwiseJudge, pairs: Sequence[JudgedPair]) -> list[float]:
    """The candidate's score per pair, asked in both orders (position swapping)."""
    prepare = getattr(judge, "prepare", None) or getattr(
        getattr(judge, "fallback", None), "prepare", None
    )
    if prepare is not None:
        prepare([t for p in pairs for t in (p.candidate, p.serving, p.reference)])
    scores = []
    for p in pairs:
        forward = judge.prefer(p.prompt, p.candidate, p.serving, p.reference)
        backward = judge.prefer(p.prompt, p.serving, p.candidate, p.reference)
        scores.append(swapped_verdict(forward, backward))
    return scores
