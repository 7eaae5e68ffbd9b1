"""The knowledge index: Qdrant collections versioned by retriever version, one alias.

Each retriever version embeds the knowledge base into its own collection,
``{alias}--{version}``; the alias names the collection that serves. A promotion builds
the new collection next to the live one and then moves the alias in one atomic
operation (blue/green), so a reader never sees a half-built index.

:class:`KnowledgeIndex` is that contract on qdrant-client: a Qdrant server
(``Settings.qdrant_url``) or its local mode (``QdrantClient(path=...)``, one client per
path per process: the Retriever replica owns it; an exact numpy scan, fine for a few
thousand objects). The embedded default is Qdrant Edge (:mod:`serving.knowledge.edge`);
:func:`serving.knowledge.engines.open_index` picks. The local client is not thread-safe,
so every call goes through one lock here.
"""

from __future__ import annotations

import hashlib
import re
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from qdrant_client import QdrantClient, models

DEFAULT_ALIAS = "aitl-knowledge"
_ID_NAMESPACE = uuid.UUID("5b4cf0a4-6a35-4b67-8a57-7f3f4f2f0c11")


@dataclass(frozen=True)
class KnowledgeDoc:
    """A knowledge object as the index stores it (the payload of its point)."""

    knowledge_id: str
    text: str
    title: str = ""
    kind: str = "OTHER"
    entity: str | None = None

    @property
    def digest(self) -> str:
        """Content hash: an unchanged object is not re-embedded."""
        return hashlib.sha256(f"{self.title}\x00{self.text}".encode()).hexdigest()[:16]

    def payload(self) -> dict[str, Any]:
        return {
            "knowledge_id": self.knowledge_id,
            "text": self.text,
            "title": self.title,
            "kind": self.kind,
            "entity": self.entity,
            "digest": self.digest,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> KnowledgeDoc:
        return cls(
            knowledge_id=str(payload["knowledge_id"]),
            text=str(payload.get("text", "")),
            title=str(payload.get("title") or ""),
            kind=str(payload.get("kind") or "OTHER"),
            entity=payload.get("entity"),
        )


@dataclass(frozen=True)
class Hit:
    """One search result."""

    knowledge_id: str
    score: float
    text: str
    title: str = ""
    kind: str = "OTHER"


def stored_digests(records: Iterable[Any]) -> dict[str, str]:
    """knowledge id -> stored content hash, from retrieved points (either engine's)."""
    return {
        str(r.payload["knowledge_id"]): str(r.payload.get("digest", ""))
        for r in records
        if r.payload
    }


def point_id(knowledge_id: str) -> str:
    """Qdrant point ids are UUIDs: a stable one per knowledge id."""
    return str(uuid.uuid5(_ID_NAMESPACE, knowledge_id))


def collection_name(alias: str, version: str) -> str:
    """The collection holding ``version``'s embeddings (safe characters only)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", version).strip("-") or "v"
    return f"{alias}--{slug}"


def open_client(url: str | None = None, path: Path | str | None = None) -> QdrantClient:
    """A server client when ``url`` is set, else embedded at ``path`` (``":memory:"`` ok)."""
    if url:
        return QdrantClient(url=url)
    if path is None or str(path) == ":memory:":
        return QdrantClient(location=":memory:")
    Path(path).mkdir(parents=True, exist_ok=True)
    return QdrantClient(path=str(path))


class Index(Protocol):
    """What :class:`~serving.knowledge.indexer.LiveIndex` needs of an index engine:
    versioned collections, upsert / retire by knowledge id, and one alias moved
    atomically (:class:`KnowledgeIndex` on qdrant-client, ``EdgeKnowledgeIndex``)."""

    alias: str

    def collection_for(self, version: str) -> str: ...
    def ensure_collection(self, name: str, dim: int) -> bool: ...
    def collections(self) -> list[str]: ...
    def upsert(
        self, collection: str, docs: Sequence[KnowledgeDoc], vectors: np.ndarray
    ) -> None: ...
    def retire(self, collection: str, knowledge_ids: Sequence[str]) -> None: ...
    def digests(self, collection: str, knowledge_ids: Sequence[str]) -> dict[str, str]: ...
    def scroll(self, collection: str, batch: int = 256) -> Iterator[list[KnowledgeDoc]]: ...
    def count(self, collection: str) -> int: ...
    def search(
        self, collection: str, vector: np.ndarray, k: int, text: str | None = None
    ) -> list[Hit]: ...
    def optimize(self, collection: str) -> bool: ...
    def aliased(self) -> str | None: ...
    def switch_alias(self, collection: str) -> str | None: ...
    def drop(self, collection: str) -> None: ...
    def close(self) -> None: ...


class KnowledgeIndex:
    """Versioned collections behind one alias on one Qdrant client."""

    def __init__(self, client: QdrantClient, alias: str = DEFAULT_ALIAS) -> None:
        self.client = client
        self.alias = alias
        self._lock = threading.RLock()

    def collection_for(self, version: str) -> str:
        return collection_name(self.alias, version)

    def ensure_collection(self, name: str, dim: int) -> bool:
        """Create the cosine collection ``name`` if missing; True when created."""
        with self._lock:
            if self.client.collection_exists(name):
                info = self.client.get_collection(name)
                size = _vector_size(info)
                if size is not None and size != dim:
                    raise ValueError(f"collection {name} has dimension {size}, expected {dim}")
                return False
            self.client.create_collection(
                name,
                vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
            )
            return True

    def collections(self) -> list[str]:
        """This alias's versioned collections."""
        with self._lock:
            names = [c.name for c in self.client.get_collections().collections]
        return sorted(n for n in names if n.startswith(self.alias + "--"))

    def upsert(self, collection: str, docs: Sequence[KnowledgeDoc], vectors: np.ndarray) -> None:
        """Insert or replace ``docs`` with their vectors (one row each)."""
        if len(docs) != len(vectors):
            raise ValueError(f"{len(docs)} docs but {len(vectors)} vectors")
        if not docs:
            return
        points = [
            models.PointStruct(id=point_id(d.knowledge_id), vector=v.tolist(), payload=d.payload())
            for d, v in zip(docs, vectors, strict=True)
        ]
        with self._lock:
            self.client.upsert(collection, points=points, wait=True)

    def retire(self, collection: str, knowledge_ids: Sequence[str]) -> None:
        """Delete these knowledge objects (unknown ids are ignored)."""
        if not knowledge_ids:
            return
        selector = models.PointIdsList(points=[point_id(k) for k in knowledge_ids])
        with self._lock:
            self.client.delete(collection, points_selector=selector, wait=True)

    def digests(self, collection: str, knowledge_ids: Sequence[str]) -> dict[str, str]:
        """The stored content hash of each of these ids that is in the collection."""
        if not knowledge_ids:
            return {}
        with self._lock:
            records = self.client.retrieve(
                collection, ids=[point_id(k) for k in knowledge_ids], with_payload=True
            )
        return stored_digests(records)

    def scroll(self, collection: str, batch: int = 256) -> Iterator[list[KnowledgeDoc]]:
        """Every stored object, ``batch`` at a time (the lock is released between pages)."""
        offset: Any = None
        while True:
            with self._lock:
                records, offset = self.client.scroll(
                    collection, limit=batch, offset=offset, with_payload=True, with_vectors=False
                )
            docs = [KnowledgeDoc.from_payload(r.payload) for r in records if r.payload]
            if docs:
                yield docs
            if offset is None:
                return

    def count(self, collection: str) -> int:
        with self._lock:
            return int(self.client.count(collection, exact=True).count)

    def search(
        self, collection: str, vector: np.ndarray, k: int, text: str | None = None
    ) -> list[Hit]:
        """The ``k`` nearest objects by cosine similarity, best first (``text`` unused:
        hybrid retrieval is the Edge engine's)."""
        with self._lock:
            result = self.client.query_points(
                collection, query=vector.tolist(), limit=k, with_payload=True
            )
        return [
            Hit(
                knowledge_id=str(p.payload["knowledge_id"]),
                score=float(p.score),
                text=str(p.payload.get("text", "")),
                title=str(p.payload.get("title") or ""),
                kind=str(p.payload.get("kind") or "OTHER"),
            )
            for p in result.points
            if p.payload
        ]

    def optimize(self, collection: str) -> bool:
        """Nothing to do: the server (and the local mode) index on their own."""
        return False

    def aliased(self) -> str | None:
        """The collection the alias points at, if any."""
        with self._lock:
            for a in self.client.get_aliases().aliases:
                if a.alias_name == self.alias:
                    return str(a.collection_name)
        return None

    def switch_alias(self, collection: str) -> str | None:
        """Point the alias at ``collection`` atomically; returns the previous target."""
        with self._lock:
            previous = self.aliased()
            ops: list[models.AliasOperations] = []
            if previous is not None:
                ops.append(
                    models.DeleteAliasOperation(
                        delete_alias=models.DeleteAlias(alias_name=self.alias)
                    )
                )
            ops.append(
                models.CreateAliasOperation(
                    create_alias=models.CreateAlias(
                        collection_name=collection, alias_name=self.alias
                    )
                )
            )
            self.client.update_collection_aliases(change_aliases_operations=ops)
        return previous

    def drop(self, collection: str) -> None:
        """Delete a collection (never the one the alias points at)."""
        with self._lock:
            if self.aliased() == collection:
                raise ValueError(f"{collection} is serving behind {self.alias}; switch first")
            self.client.delete_collection(collection)

    def close(self) -> None:
        with self._lock:
            self.client.close()


def _vector_size(info: Any) -> int | None:
    vectors = info.config.params.vectors
    return int(vectors.size) if isinstance(vectors, models.VectorParams) else None
