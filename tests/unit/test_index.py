"""Knowledge index: upsert / retire, versioned collections and the blue/green alias."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
from qdrant_client import QdrantClient

from kernel.events import KnowledgeChanged, KnowledgeOp
from serving.knowledge.dataset import KnowledgeObject
from serving.knowledge.edge import EdgeKnowledgeIndex
from serving.knowledge.index import Index, KnowledgeDoc, KnowledgeIndex, collection_name
from serving.knowledge.indexer import LiveIndex, knowledge_events

DIM = 64


class WordEncoder:
    """A deterministic bag-of-words encoder; ``salt`` makes a different "model"."""

    def __init__(self, version: str, salt: str = "") -> None:
        self.version = version
        self.salt = salt
        self.dim = DIM
        self.encoded: list[str] = []

    def encode(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        if not query:
            self.encoded.extend(texts)
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                h = hashlib.md5((self.salt + word.strip(".,?!")).encode()).digest()
                out[row, h[0] % DIM] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)


def upsert(kid: str, text: str) -> KnowledgeChanged:
    return KnowledgeChanged(knowledge_id=kid, op=KnowledgeOp.UPSERT, text=text)


def retire(kid: str) -> KnowledgeChanged:
    return KnowledgeChanged(knowledge_id=kid, op=KnowledgeOp.RETIRE)


KB = [
    upsert("kb-pets", "Pets are allowed for a fee of twenty dollars"),
    upsert("kb-wifi", "Wifi is free in every room"),
    upsert("kb-park", "Parking costs ten dollars per night"),
]


@pytest.fixture(params=["local", "edge"])
def index(request: pytest.FixtureRequest) -> Iterator[Index]:
    """Every contract test runs on both embedded engines."""
    if request.param == "edge":
        idx: Index = EdgeKnowledgeIndex(":memory:", alias="kb")
    else:
        idx = KnowledgeIndex(QdrantClient(location=":memory:"), alias="kb")
    yield idx
    idx.close()


def ids(hits: Sequence[object]) -> list[str]:
    return [h.knowledge_id for h in hits]  # type: ignore[attr-defined]


def test_upsert_is_searchable_and_retire_removes(index: Index) -> None:
    live = LiveIndex(index, WordEncoder("v1"))  # type: ignore[arg-type]
    result = live.apply(KB)
    assert (result.upserted, result.embedded) == (3, 3)
    version, hits = live.search("is wifi free", 2)
    assert version == "v1"
    assert ids(hits)[0] == "kb-wifi"
    assert hits[0].text == "Wifi is free in every room"

    live.apply([retire("kb-wifi")])
    assert "kb-wifi" not in ids(live.search("is wifi free", 3)[1])
    assert index.count(live.collection) == 2


def test_unchanged_objects_are_not_re_embedded(index: Index) -> None:
    encoder = WordEncoder("v1")
    live = LiveIndex(index, encoder)  # type: ignore[arg-type]
    live.apply(KB)
    replay = live.apply([*KB, upsert("kb-park", "Parking is free")])
    assert replay.embedded == 1  # a replay of the compacted topic embeds only the change
    assert encoder.encoded[-1] == "Parking is free"
    assert ids(live.search("free parking", 1)[1]) == ["kb-park"]


def test_last_event_per_id_wins_within_a_batch(index: Index) -> None:
    live = LiveIndex(index, WordEncoder("v1"))  # type: ignore[arg-type]
    live.apply([upsert("kb-x", "first text"), retire("kb-x"), upsert("kb-y", "other")])
    assert index.count(live.collection) == 1
    live.apply([retire("kb-y"), upsert("kb-y", "back again")])
    assert ids(live.search("back again", 1)[1]) == ["kb-y"]


def test_alias_switch_is_blue_green(index: Index) -> None:
    live = LiveIndex(index, WordEncoder("v1"))  # type: ignore[arg-type]
    live.apply(KB)
    assert index.aliased() == collection_name("kb", "v1")

    result = live.switch(WordEncoder("v2", salt="new"))  # type: ignore[arg-type]
    assert result.previous == collection_name("kb", "v1")
    assert result.collection == collection_name("kb", "v2") == index.aliased()
    assert (result.objects, result.embedded) == (3, 3)
    version, hits = live.search("is wifi free", 1)
    assert (version, ids(hits)) == ("v2", ["kb-wifi"])
    # the old collection stays for a rollback, which re-embeds only what changed since
    live.apply([upsert("kb-new", "Late checkout until noon")])
    back = live.switch(WordEncoder("v1"))  # type: ignore[arg-type]
    assert (back.collection, back.objects, back.embedded) == (collection_name("kb", "v1"), 4, 1)
    assert index.collections() == [collection_name("kb", "v1"), collection_name("kb", "v2")]


def test_changes_during_a_rebuild_reach_the_new_collection(
    index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = LiveIndex(index, WordEncoder("v1"))  # type: ignore[arg-type]
    live.apply(KB)
    searched: list[str] = []
    scroll = index.scroll

    def scroll_then_change(collection: str, batch: int = 256):  # type: ignore[no-untyped-def]
        for n, page in enumerate(scroll(collection, 1)):
            yield page
            if n == 0 and collection == collection_name("kb", "v1"):
                searched.append(live.search("wifi", 1)[0])  # readers keep the old version
                live.apply([upsert("kb-late", "Late checkout until noon"), retire("kb-park")])

    monkeypatch.setattr(index, "scroll", scroll_then_change)
    live.switch(WordEncoder("v2", salt="new"))  # type: ignore[arg-type]
    assert searched == ["v1"]
    hits = live.search("late checkout", 5)[1]
    assert ids(hits)[0] == "kb-late"
    assert "kb-park" not in ids(hits)
    assert index.count(live.collection) == 3


def test_stale_points_of_an_old_build_are_removed(index: Index) -> None:
    live = LiveIndex(index, WordEncoder("v1"))  # type: ignore[arg-type]
    live.apply(KB)
    live.switch(WordEncoder("v2", salt="new"))  # type: ignore[arg-type]
    live.apply([retire("kb-pets")])  # v1's collection still holds kb-pets
    live.switch(WordEncoder("v1"))  # type: ignore[arg-type]
    assert "kb-pets" not in ids(live.search("pets allowed", 3)[1])


def test_dimension_mismatch_is_refused(index: Index) -> None:
    index.ensure_collection("kb--v1", 8)
    with pytest.raises(ValueError, match="dimension"):
        index.ensure_collection("kb--v1", 16)


def test_serving_collection_cannot_be_dropped(index: Index) -> None:
    live = LiveIndex(index, WordEncoder("v1"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="switch first"):
        index.drop(live.collection)


def test_docs_round_trip_through_payloads_and_dataset_objects_become_events() -> None:
    doc = KnowledgeDoc("kb-1", "text", "title", "FAQ", "Acorn")
    assert KnowledgeDoc.from_payload(doc.payload()) == doc
    events = knowledge_events(
        [KnowledgeObject("hotel:1:faq:0", "faq", "Q?", "A. Q: Q? A: yes", "A")]
    )
    assert events[0].kind.value == "FAQ"
    assert events[0].key() == "hotel:1:faq:0"
