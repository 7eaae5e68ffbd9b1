"""Keeps the knowledge index in sync with the compacted knowledge topic.

:class:`LiveIndex` is what the retriever serves from: one retriever version's encoder and
collection. It applies knowledge upserts / retires and, on a retriever promotion,
re-embeds the whole knowledge base into the new version's collection before it moves the
alias (blue/green). While a rebuild runs, changes are written to both collections, so the
new one is complete when it takes over.

:class:`KnowledgeIndexer` is the thin edge: a thread that reads the topic from the start
on every start (the topic is compacted, and an object whose content hash is unchanged is
not re-embedded, so a replay costs a read, not an embedding pass) and hands each batch
to :meth:`LiveIndex.apply`. No offsets are committed; the index is derived state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from kernel.events import Event, KnowledgeChanged, KnowledgeKind, KnowledgeOp
from kernel.settings import KafkaSettings
from serving._internal import TopicFollower
from serving.knowledge.dataset import KnowledgeObject
from serving.knowledge.index import Hit, Index, KnowledgeDoc
from serving.retriever import Encoder

log = logging.getLogger(__name__)


def doc_from_event(event: KnowledgeChanged) -> KnowledgeDoc:
    """The indexed form of an upsert event."""
    return KnowledgeDoc(
        knowledge_id=event.knowledge_id,
        text=event.text,
        title=event.title,
        kind=event.kind.value,
        entity=event.entity,
    )


def knowledge_events(objects: Iterable[KnowledgeObject]) -> list[KnowledgeChanged]:
    """Upsert events for a dataset's knowledge base (to publish on the knowledge topic)."""
    return [
        KnowledgeChanged(
            knowledge_id=o.id,
            op=KnowledgeOp.UPSERT,
            kind=KnowledgeKind(o.kind.upper()),
            title=o.title,
            text=o.text,
            entity=o.entity,
        )
        for o in objects
    ]


@dataclass
class ApplyResult:
    upserted: int = 0
    embedded: int = 0
    retired: int = 0


@dataclass
class SwitchResult:
    """What a blue/green switch did."""

    version: str
    collection: str
    previous: str | None
    objects: int
    embedded: int
    seconds: float


@dataclass
class _Target:
    encoder: Encoder
    collection: str
    touched: set[str] = field(default_factory=set)


class LiveIndex:
    """One serving version of the index, with changes mirrored into a building one."""

    def __init__(self, index: Index, encoder: Encoder) -> None:
        self.index = index
        collection = index.collection_for(encoder.version)
        index.ensure_collection(collection, encoder.dim)
        if index.aliased() != collection:
            index.switch_alias(collection)
        self._active = _Target(encoder, collection)
        self._building: dict[str, _Target] = {}
        self._write = threading.Lock()  # serialises writers; readers never take it
        self._switch = threading.Lock()  # one switch at a time

    @property
    def version(self) -> str:
        return self._active.encoder.version

    @property
    def collection(self) -> str:
        return self._active.collection

    def search(self, query: str, k: int) -> tuple[str, list[Hit]]:
        """The serving version and the ``k`` best hits for ``query``."""
        active = self._active  # one read: encoder and collection stay consistent
        vector = active.encoder.encode([query], query=True)[0]
        return active.encoder.version, self.index.search(active.collection, vector, k, query)

    def apply(self, events: Sequence[KnowledgeChanged]) -> ApplyResult:
        """Apply upserts and retires in order (the last event per id wins)."""
        final: dict[str, KnowledgeChanged] = {}
        for event in events:
            final.pop(event.knowledge_id, None)
            final[event.knowledge_id] = event
        upserts = [doc_from_event(e) for e in final.values() if e.op is KnowledgeOp.UPSERT]
        retires = [k for k, e in final.items() if e.op is KnowledgeOp.RETIRE]
        result = ApplyResult(upserted=len(upserts), retired=len(retires))
        with self._write:
            for target in [self._active, *self._building.values()]:
                result.embedded += self._write_docs(target, upserts)
                self.index.retire(target.collection, retires)
                target.touched.update(d.knowledge_id for d in upserts)
        return result

    def load(self, docs: Sequence[KnowledgeDoc]) -> int:
        """Upsert documents directly (tests, benchmarks); returns how many were embedded."""
        with self._write:
            return sum(self._write_docs(t, docs) for t in [self._active, *self._building.values()])

    def _write_docs(self, target: _Target, docs: Sequence[KnowledgeDoc]) -> int:
        if not docs:
            return 0
        stored = self.index.digests(target.collection, [d.knowledge_id for d in docs])
        changed = [d for d in docs if stored.get(d.knowledge_id) != d.digest]
        if changed:
            vectors = target.encoder.encode([d.text for d in changed])
            self.index.upsert(target.collection, changed, vectors)
        return len(changed)

    def switch(self, encoder: Encoder, page: int = 256) -> SwitchResult:
        """Re-embed the knowledge base for ``encoder`` and serve it (blue/green).

        Searches keep using the old version until the new collection is complete; a
        collection built earlier (a rollback) only re-embeds what changed since.
        """
        started = time.perf_counter()
        with self._switch:
            source = self._active
            name = self.index.collection_for(encoder.version)
            if name == source.collection:
                self._active = _Target(encoder, name)
                return SwitchResult(encoder.version, name, name, self.index.count(name), 0, 0.0)
            self.index.ensure_collection(name, encoder.dim)
            target = _Target(encoder, name)
            with self._write:
                self._building[name] = target
            seen: set[str] = set()
            embedded = 0
            try:
                for docs in self.index.scroll(source.collection, page):
                    with self._write:
                        embedded += self._write_docs(target, docs)
                    seen.update(d.knowledge_id for d in docs)
                with self._write:
                    keep = seen | target.touched
                    stale = [
                        d.knowledge_id
                        for docs in self.index.scroll(name, page)
                        for d in docs
                        if d.knowledge_id not in keep
                    ]
                    self.index.retire(name, stale)
                    previous = self.index.switch_alias(name)
                    self._active = _Target(encoder, name)
            finally:
                with self._write:
                    self._building.pop(name, None)
            objects = self.index.count(name)
        log.info("knowledge index now %s (%d objects, %d embedded)", name, objects, embedded)
        return SwitchResult(
            encoder.version, name, previous, objects, embedded, time.perf_counter() - started
        )


class KnowledgeIndexer(TopicFollower):
    """A background thread feeding the knowledge topic into a :class:`LiveIndex`."""

    def __init__(
        self, live: LiveIndex, kafka: KafkaSettings, *, batch: int = 500, poll_s: float = 0.5
    ) -> None:
        super().__init__(kafka, "knowledge", "serving-indexer", batch=batch, poll_s=poll_s)
        self.live = live
        self.applied = 0
        self.caught_up = threading.Event()

    def handle(self, events: Sequence[Event]) -> None:
        changes = [e for e in events if isinstance(e, KnowledgeChanged)]
        if changes:
            self.live.apply(changes)
            self.applied += len(changes)

    def on_idle(self) -> None:
        self.caught_up.set()  # an empty poll: the replay reached the end of the topic
