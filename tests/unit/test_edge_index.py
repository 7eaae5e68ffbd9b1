"""The Qdrant Edge engine: what it adds to the index contract (restart, hybrid, engines)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from kernel.events import KnowledgeChanged, KnowledgeOp
from serving.knowledge import engines
from serving.knowledge.edge import EdgeKnowledgeIndex, EdgeTuning
from serving.knowledge.engines import open_index
from serving.knowledge.index import KnowledgeDoc, KnowledgeIndex
from serving.knowledge.indexer import LiveIndex

DIM = 8


class FlatEncoder:
    """Every text gets the same vector: dense retrieval cannot tell objects apart."""

    version = "flat"
    dim = DIM

    def encode(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        return np.ones((len(texts), DIM), dtype=np.float32) / np.sqrt(DIM)


def unit(*values: float) -> np.ndarray:
    v = np.array([*values, *[0.0] * (DIM - len(values))], dtype=np.float32)
    return v / np.linalg.norm(v)


def test_the_alias_and_the_collections_survive_a_restart(tmp_path: Path) -> None:
    first = EdgeKnowledgeIndex(tmp_path, alias="kb")
    v1, v2 = first.collection_for("v1"), first.collection_for("v2")
    for name in (v1, v2):
        first.ensure_collection(name, DIM)
    first.upsert(v2, [KnowledgeDoc("kb-1", "wifi is free")], unit(1.0)[None])
    first.switch_alias(v2)
    first.close()

    again = EdgeKnowledgeIndex(tmp_path, alias="kb")
    assert again.aliased() == v2
    assert again.collections() == [v1, v2]
    assert [h.knowledge_id for h in again.search(v2, unit(1.0), 1)] == ["kb-1"]
    assert again.ensure_collection(v2, DIM) is False
    again.close()
    assert tmp_path.exists()  # a real path is kept; only ":memory:" is temporary


def test_hybrid_fuses_a_keyword_match_that_dense_ranks_last() -> None:
    index = EdgeKnowledgeIndex(":memory:", alias="kb", hybrid=True)
    name = index.collection_for("v1")
    index.ensure_collection(name, DIM)
    docs = [
        KnowledgeDoc("kb-a", "breakfast is served from seven"),
        KnowledgeDoc("kb-c", "the pool opens at nine"),
        KnowledgeDoc("kb-b", "a cot costs fifteen dollars"),
    ]
    index.upsert(name, docs, np.stack([unit(1.0), unit(1.0, 0.5), unit(0.0, 1.0)]))
    query = unit(1.0)
    assert [h.knowledge_id for h in index.search(name, query, 2)] == ["kb-a", "kb-c"]
    fused = [h.knowledge_id for h in index.search(name, query, 2, "how much is a cot")]
    assert sorted(fused) == ["kb-a", "kb-b"]
    index.hybrid = False
    dense = [h.knowledge_id for h in index.search(name, query, 2, "how much is a cot")]
    assert dense == ["kb-a", "kb-c"]
    index.close()


def test_live_index_hands_the_query_text_to_a_hybrid_index() -> None:
    index = EdgeKnowledgeIndex(":memory:", alias="kb", hybrid=True)
    live = LiveIndex(index, FlatEncoder())  # type: ignore[arg-type]
    texts = {"kb-pets": "Pets are allowed", "kb-wifi": "Wifi is free", "kb-park": "Parking"}
    live.apply(
        [KnowledgeChanged(knowledge_id=k, op=KnowledgeOp.UPSERT, text=t) for k, t in texts.items()]
    )
    for word, expected in (("pets", "kb-pets"), ("wifi", "kb-wifi"), ("parking", "kb-park")):
        assert live.search(f"are {word} ok", 3)[1][0].knowledge_id == expected
    index.close()


def test_writes_past_optimize_after_build_the_graph() -> None:
    index = EdgeKnowledgeIndex(":memory:", alias="kb", tuning=EdgeTuning(optimize_after=3))
    name = index.collection_for("v1")
    index.ensure_collection(name, DIM)
    calls: list[str] = []
    optimize = index.optimize
    index.optimize = lambda c: calls.append(c) or optimize(c)  # type: ignore[method-assign]
    rows = np.stack([unit(1.0, n) for n in range(2)])
    index.upsert(name, [KnowledgeDoc("a", "a"), KnowledgeDoc("b", "b")], rows)
    assert calls == []
    index.upsert(name, [KnowledgeDoc("c", "c"), KnowledgeDoc("d", "d")], rows)
    assert calls == [name]
    index.close()


def test_open_index_picks_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    edge = open_index(None, tmp_path, "kb")
    assert isinstance(edge, EdgeKnowledgeIndex)
    assert edge.root == tmp_path / "edge"
    edge.close()
    local = open_index(None, ":memory:", "kb", engine="local")
    assert isinstance(local, KnowledgeIndex)
    local.close()
    urls: list[str | None] = []
    real = engines.open_client
    monkeypatch.setattr(engines, "open_client", lambda url, path: urls.append(url) or real())
    server = open_index("http://qdrant:6333", None, "kb")  # a server whatever the engine
    assert isinstance(server, KnowledgeIndex)
    assert urls == ["http://qdrant:6333"]
    with pytest.raises(ValueError, match="Edge"):
        open_index(None, ":memory:", "kb", engine="local", hybrid=True)
