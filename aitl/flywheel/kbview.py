"""The knowledge base as a support agent sees it: a lexical search box and the documents.

A simulated agent that misses knowledge looks for it the way a person does, by typing
words it remembers into the knowledge base's search. That search is a plain BM25 over
title and text with the project's one tokenizer, deliberately *not* the embedding model
being trained: the agents' reports must not be shaped by the model they are teaching.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from kernel.text import tokens
from serving.knowledge.dataset import KnowledgeObject

K1 = 1.2  # BM25 term-frequency saturation (the usual default)
B = 0.75  # BM25 length normalisation (the usual default)


class KnowledgeView:
    """A BM25 search over knowledge objects, with their texts and entities."""

    def __init__(self, knowledge: Sequence[KnowledgeObject]) -> None:
        self.ids = [o.id for o in knowledge]
        self._by_id = {o.id: o for o in knowledge}
        docs = [tokens(f"{o.title} {o.text}") for o in knowledge]
        n = len(docs)
        avgdl = sum(len(d) for d in docs) / n if n else 1.0
        postings: dict[str, list[tuple[int, float]]] = {}
        for i, doc in enumerate(docs):
            norm = K1 * (1 - B + B * len(doc) / (avgdl or 1.0))
            for term, tf in Counter(doc).items():
                postings.setdefault(term, []).append((i, tf * (K1 + 1) / (tf + norm)))
        self._index: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = {}
        for term, rows in postings.items():
            idf = math.log(1 + (n - len(rows) + 0.5) / (len(rows) + 0.5))
            self._index[term] = (
                np.array([i for i, _ in rows], dtype=np.int64),
                np.array([w * idf for _, w in rows], dtype=np.float64),
            )
        self._n = n
        names = {o.entity for o in knowledge if o.entity}
        # a name is recognised without a leading "the" ("the Lensfield Hotel" / "Lensfield")
        self._names = sorted(
            ((f" {' '.join(tokens(_strip_the(name.lower())))} ", name) for name in names),
            key=lambda p: -len(p[0]),
        )

    def __len__(self) -> int:
        return self._n

    def search(self, words: str, k: int) -> list[str]:
        """The ids of the ``k`` best BM25 matches of ``words`` (fewer when fewer match);
        ties keep the knowledge base's order, so a search is deterministic."""
        scores = np.zeros(self._n, dtype=np.float64)
        for term, qtf in Counter(tokens(words)).items():
            hit = self._index.get(term)
            if hit is not None:
                scores[hit[0]] += qtf * hit[1]
        if k <= 0 or not scores.any():
            return []
        top = np.argsort(-scores, kind="stable")[:k]
        return [self.ids[i] for i in top if scores[i] > 0]

    def text(self, kid: str) -> str:
        """The object's text as shown ("" when unknown)."""
        obj = self._by_id.get(kid)
        return obj.text if obj else ""

    def body(self, kid: str) -> str:
        """The text without its leading ``"{entity}. "``, so that a similarity to the
        conversation measures what the object says, not which hotel it is about."""
        obj = self._by_id.get(kid)
        if obj is None:
            return ""
        prefix = f"{obj.entity}. " if obj.entity else ""
        return obj.text[len(prefix) :] if obj.text.startswith(prefix) else obj.text

    def entity(self, kid: str) -> str | None:
        """The name of the entity the object is about (None: domain-wide or unknown)."""
        obj = self._by_id.get(kid)
        return obj.entity if obj else None

    def mentioned_entity(self, turns: Sequence[str]) -> str | None:
        """The entity named most recently in ``turns`` (oldest first), if any: the hotel
        the customer is talking about, as an agent reading the conversation would tell."""
        for turn in reversed(turns):
            low = f" {' '.join(tokens(turn))} "
            for key, name in self._names:
                if key in low:
                    return name
        return None


def _strip_the(name: str) -> str:
    return name[4:] if name.startswith("the ") else name
