"""What the Ray Serve deployments pass each other: typed, frozen records.

The ingress calls ``Retriever.retrieve`` -> :class:`Retrieved`, ``Ranker.rank`` ->
:class:`Ranked`, ``Generator.generate`` (:class:`GenerateRequest`) -> :class:`Generated`.
Ray pickles them between replicas; nothing crosses as an untyped dict.
"""

from __future__ import annotations

from dataclasses import dataclass

from serving.generator import Reply
from serving.knowledge.index import Hit


@dataclass(frozen=True)
class Retrieved:
    version: str  # the retriever version that produced the hits
    hits: list[Hit]
    ms: float


@dataclass(frozen=True)
class Ranked:
    version: str
    kind: str  # the ranker kind (embedding, cross-encoder, ...)
    ranked: list[Hit]  # the top rank_k, rescored
    ms: float


@dataclass(frozen=True)
class GenerateRequest:
    query: str  # the customer's message
    history: list[tuple[str, str]]  # (speaker, text)
    knowledge: list[Hit]  # what the prompt shows, best first


@dataclass(frozen=True)
class Generated:
    version: str
    candidates: list[Reply]
    new_tokens: int
    batch: int  # how many requests were decoded together
    ms: float
