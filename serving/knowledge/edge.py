"""The embedded knowledge index on Qdrant Edge: the engine itself, in-process, with HNSW.

Qdrant Edge has no collections and no aliases: one ``EdgeShard`` is one directory. This
module keeps :class:`~serving.knowledge.index.KnowledgeIndex`'s contract on top of it:
one shard per versioned collection (``<root>/<collection>/shard``, its dimension in
``meta.json`` beside it) and the alias in ``<root>/aliases.json``, rewritten by an atomic
rename, so a restart finds the collection that served.

Every point carries the dense vector and a BM25 sparse vector of its title and text
(``bm25``, IDF from the shard's own statistics), so hybrid retrieval (dense and BM25 fused
by reciprocal rank) is a query-time choice, not a rebuild. Writes land in an appendable
segment that is scanned exactly; :meth:`optimize` (run after ``optimize_after`` new
points, and before a rebuilt collection takes the alias) builds the HNSW graph.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from serving.knowledge.index import (
    DEFAULT_ALIAS,
    Hit,
    KnowledgeDoc,
    collection_name,
    point_id,
    stored_digests,
)

SPARSE = "bm25"
_ALIASES = "aliases.json"


@dataclass(frozen=True)
class EdgeTuning:
    """HNSW and search knobs. The defaults give Recall@75 0.96 vs exact at 100k synthetic
    objects (``python -m bench.knowledge``). ``optimize_after``: new points scanned exactly
    before the graph is rebuilt; building once per 100k instead of per 20k made a 100k
    bulk load 90 s instead of 133 s (same load), and 100k exact is still ~20 ms."""

    m: int = 16
    ef_construct: int = 100
    hnsw_ef: int = 128
    full_scan_threshold_kb: int = 10_000
    optimize_after: int = 100_000
    rrf_k: int = 60


def _hit(point: Any) -> Hit | None:
    payload = point.payload
    if not payload:
        return None
    return Hit(
        knowledge_id=str(payload["knowledge_id"]),
        score=float(point.score),
        text=str(payload.get("text", "")),
        title=str(payload.get("title") or ""),
        kind=str(payload.get("kind") or "OTHER"),
    )


class EdgeKnowledgeIndex:
    """Versioned Qdrant Edge shards behind one alias, under one directory.

    ``path`` None or ``":memory:"``: a temporary directory removed on :meth:`close`.
    ``hybrid``: :meth:`search` given the query text fuses dense and BM25 rankings (RRF).
    """

    def __init__(
        self,
        path: Path | str | None = None,
        alias: str = DEFAULT_ALIAS,
        *,
        hybrid: bool = False,
        tuning: EdgeTuning | None = None,
    ) -> None:
        self._temporary = path is None or str(path) == ":memory:"
        self.root = Path(tempfile.mkdtemp(prefix="aitl-edge-") if self._temporary else str(path))
        self.root.mkdir(parents=True, exist_ok=True)
        self.alias = alias
        self.hybrid = hybrid
        self.tuning = tuning or EdgeTuning()
        self._bm25 = qe.Bm25()
        self._shards: dict[str, qe.EdgeShard] = {}
        self._pending: dict[str, int] = {}
        self._locks: dict[str, threading.RLock] = {}
        self._lock = threading.RLock()  # the maps and the alias; a shard has its own lock

    # -- collections -------------------------------------------------------------------

    def collection_for(self, version: str) -> str:
        return collection_name(self.alias, version)

    def _config(self, dim: int) -> qe.EdgeConfig:
        t = self.tuning
        return qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            hnsw_config=qe.HnswIndexConfig(
                m=t.m, ef_construct=t.ef_construct, full_scan_threshold=t.full_scan_threshold_kb
            ),
        )

    def _dim(self, name: str) -> int | None:
        meta = self.root / name / "meta.json"
        return int(json.loads(meta.read_text())["dim"]) if meta.exists() else None

    def _shard(self, name: str) -> tuple[qe.EdgeShard, threading.RLock]:
        """The open shard and its lock: a long optimize of one never blocks another."""
        with self._lock:
            shard = self._shards.get(name)
            if shard is None:
                if self._dim(name) is None:
                    raise KeyError(f"no collection {name}")
                shard = qe.EdgeShard.load(str(self.root / name / "shard"))
                self._shards[name] = shard
            return shard, self._locks.setdefault(name, threading.RLock())

    def ensure_collection(self, name: str, dim: int) -> bool:
        """Create the cosine collection ``name`` if missing; True when created."""
        with self._lock:
            size = self._dim(name)
            if size is not None:
                if size != dim:
                    raise ValueError(f"collection {name} has dimension {size}, expected {dim}")
                return False
            folder = self.root / name
            shutil.rmtree(folder, ignore_errors=True)  # a create that died before meta.json
            folder.mkdir(parents=True)
            self._shards[name] = qe.EdgeShard.create(str(folder / "shard"), self._config(dim))
            _write_atomic(folder / "meta.json", {"dim": dim})
            return True

    def collections(self) -> list[str]:
        """This alias's versioned collections."""
        prefix = self.alias + "--"
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.name.startswith(prefix) and (p / "meta.json").exists()
        )

    # -- points --------------------------------------------------------------------------

    def upsert(self, collection: str, docs: Sequence[KnowledgeDoc], vectors: np.ndarray) -> None:
        """Insert or replace ``docs`` with their vectors (one row each)."""
        if len(docs) != len(vectors):
            raise ValueError(f"{len(docs)} docs but {len(vectors)} vectors")
        if not docs:
            return
        points = [
            qe.Point(
                id=point_id(d.knowledge_id),
                vector={"": v.tolist(), SPARSE: self._bm25.embed_document(_words(d))},
                payload=d.payload(),
            )
            for d, v in zip(docs, vectors, strict=True)
        ]
        shard, lock = self._shard(collection)
        with lock:
            shard.update(qe.UpdateOperation.upsert_points(points))
            pending = self._pending[collection] = self._pending.get(collection, 0) + len(points)
        if pending >= self.tuning.optimize_after:
            self.optimize(collection)

    def optimize(self, collection: str) -> bool:
        """Build the HNSW graph over what was written since (blocking); True if it did."""
        shard, lock = self._shard(collection)
        with lock:
            self._pending[collection] = 0
            return bool(shard.optimize())

    def retire(self, collection: str, knowledge_ids: Sequence[str]) -> None:
        """Delete these knowledge objects (unknown ids are ignored)."""
        if not knowledge_ids:
            return
        shard, lock = self._shard(collection)
        with lock:
            shard.update(qe.UpdateOperation.delete_points([point_id(k) for k in knowledge_ids]))

    def digests(self, collection: str, knowledge_ids: Sequence[str]) -> dict[str, str]:
        """The stored content hash of each of these ids that is in the collection."""
        if not knowledge_ids:
            return {}
        shard, lock = self._shard(collection)
        with lock:
            records = shard.retrieve(
                [point_id(k) for k in knowledge_ids], with_payload=True, with_vector=False
            )
        return stored_digests(records)

    def scroll(self, collection: str, batch: int = 256) -> Iterator[list[KnowledgeDoc]]:
        """Every stored object, ``batch`` at a time (the lock is released between pages)."""
        offset: Any = None
        while True:
            request = qe.ScrollRequest(
                offset=offset, limit=batch, with_payload=True, with_vector=False
            )
            shard, lock = self._shard(collection)
            with lock:
                records, offset = shard.scroll(request)
            docs = [KnowledgeDoc.from_payload(r.payload) for r in records if r.payload]
            if docs:
                yield docs
            if offset is None:
                return

    def count(self, collection: str) -> int:
        shard, lock = self._shard(collection)
        with lock:
            return int(shard.count(qe.CountRequest(exact=True)))

    def search(
        self, collection: str, vector: np.ndarray, k: int, text: str | None = None
    ) -> list[Hit]:
        """The ``k`` best objects, best first: by cosine, or fused with BM25 on ``text``."""
        params = qe.SearchParams(hnsw_ef=max(self.tuning.hnsw_ef, k))
        dense = qe.Query.Nearest(vector.tolist())
        if self.hybrid and text:
            request = qe.QueryRequest(
                limit=k,
                prefetches=[
                    qe.Prefetch(limit=k, query=dense, params=params),
                    qe.Prefetch(
                        limit=k,
                        query=qe.Query.Nearest(self._bm25.embed_query(text), using=SPARSE),
                    ),
                ],
                # the stub types Fusion.Rrf as a class nested in Fusion, not one of it
                query=qe.Fusion.Rrf(k=self.tuning.rrf_k),  # type: ignore[arg-type]
                with_payload=True,
            )
        else:
            request = qe.QueryRequest(limit=k, query=dense, params=params, with_payload=True)
        shard, lock = self._shard(collection)
        with lock:
            points = shard.query(request)
        return [h for h in map(_hit, points) if h is not None]

    # -- the alias -----------------------------------------------------------------------

    def _aliases(self) -> dict[str, str]:
        file = self.root / _ALIASES
        return dict(json.loads(file.read_text())) if file.exists() else {}

    def aliased(self) -> str | None:
        """The collection the alias points at, if any."""
        with self._lock:
            return self._aliases().get(self.alias)

    def switch_alias(self, collection: str) -> str | None:
        """Point the alias at ``collection`` atomically; returns the previous target.

        The collection's HNSW graph is built first, so it serves indexed from the start.
        """
        self.optimize(collection)  # also refuses an unknown collection
        with self._lock:
            aliases = self._aliases()
            previous = aliases.get(self.alias)
            aliases[self.alias] = collection
            _write_atomic(self.root / _ALIASES, aliases)
        return previous

    def drop(self, collection: str) -> None:
        """Delete a collection (never the one the alias points at)."""
        with self._lock:
            if self.aliased() == collection:
                raise ValueError(f"{collection} is serving behind {self.alias}; switch first")
            shard = self._shards.pop(collection, None)
            if shard is not None:
                with self._locks.pop(collection, threading.RLock()):
                    shard.close()
            self._pending.pop(collection, None)
            shutil.rmtree(self.root / collection, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            for shard in self._shards.values():
                shard.close()
            self._shards.clear()
            if self._temporary:
                shutil.rmtree(self.root, ignore_errors=True)


def _words(doc: KnowledgeDoc) -> str:
    return f"{doc.title}\n{doc.text}" if doc.title else doc.text


def _write_atomic(file: Path, value: dict[str, Any]) -> None:
    tmp = file.with_suffix(".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, file)
