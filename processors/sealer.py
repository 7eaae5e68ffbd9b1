"""Open shards per (tenant, component, split), sealed by row count or age, deduplicated
by example id, within a tenant, against everything already sealed in the store. A shard
holds one tenant's rows: its manifest and its ``ShardSealed`` envelope name the tenant.

On start (and whenever partitions are assigned) the writer reads the ``example_id`` column
of every sealed shard it has not read yet, so a replay after a crash, or a partition that
moved from another worker, never seals an example twice.

Sealing has two halves: :meth:`ShardWriter.seal` decides (takes the rows out of the open
shard, names the shard, marks its example ids sealed) and is cheap; :meth:`SealedShard.write`
writes Parquet and then the manifest, which costs a few hundred milliseconds for a large
shard. With ``defer_writes`` the worker runs the second half in a thread while the stream
goes on; the shard's messages are acknowledged only once it is written and announced.
"""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from kernel.envelope import DEFAULT_TENANT, Envelope, tenant_key
from kernel.events import Component, OffsetRange, ShardSealed, Split
from kernel.shards import ROW_SCHEMAS, Manifest, Row, ShardStore
from processors import metrics
from processors.offsets import Ticket

Key = tuple[str, str, str]  # (tenant, component, split), lower case as the store spells them


@dataclass
class OpenShard:
    component: str
    split: str
    opened: float  # monotonic
    tenant_id: str = DEFAULT_TENANT
    rows: list[Row] = field(default_factory=list)
    tickets: list[Ticket] = field(default_factory=list)
    offsets: dict[tuple[str, int], list[int]] = field(default_factory=dict)  # tp -> [min, max]

    def add(self, rows: Sequence[Row], ticket: Ticket) -> None:
        self.rows.extend(rows)
        if not self.tickets or self.tickets[-1] is not ticket:
            ticket.hold()
            self.tickets.append(ticket)
        span = self.offsets.setdefault((ticket.topic, ticket.partition), [ticket.offset] * 2)
        span[0], span[1] = min(span[0], ticket.offset), max(span[1], ticket.offset)


@dataclass
class SealedShard:
    """A sealed shard: the event to announce it, the tickets it held, and (until
    :meth:`write` ran) the rows still to write."""

    manifest: Manifest
    event: ShardSealed
    tickets: list[Ticket]
    store: ShardStore
    rows: list[Row] | None = None
    after_stage: Callable[[str], None] | None = None  # the fault hook (processors/faults.py)

    @property
    def written(self) -> bool:
        return self.rows is None

    def write(self) -> None:
        """Parquet, then the manifest (the seal); blocking I/O, safe in a thread."""
        if self.rows is None:
            return
        self.manifest = self.store.write(self.manifest, self.rows, self.after_stage)
        self.rows = None
        component, split = self.manifest.component, self.manifest.split
        metrics.SHARD_ROWS.labels(component, split).inc(self.manifest.rows)
        metrics.SHARDS_SEALED.labels(component, split).inc()


def sealed_event(store: ShardStore, manifest: Manifest) -> ShardSealed:
    """The ``ShardSealed`` event that announces a shard, from its manifest alone (so a
    shard sealed by a worker that died before announcing it can be announced later)."""
    uri = store.fs.unstrip_protocol(manifest.parquet)
    return ShardSealed(
        envelope=Envelope(tenant_id=manifest.tenant_id),
        shard_id=manifest.shard_id,
        component=Component.parse(manifest.component),
        split=Split.parse(manifest.split),
        uri=uri,
        manifest_uri=uri.removesuffix(".parquet") + ".manifest.json",
        rows=manifest.rows,
        min_event_time=datetime.fromisoformat(manifest.min_event_time),
        max_event_time=datetime.fromisoformat(manifest.max_event_time),
        judge_version=manifest.judge_version,
        source_offsets=[OffsetRange(**o) for o in manifest.source_offsets],
    )


class ShardWriter:
    """Buffers rows, seals shards into a :class:`ShardStore`, drops sealed duplicates."""

    def __init__(
        self,
        store: ShardStore,
        judge_version: str,
        seal_rows: int = 5000,
        seal_age_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        defer_writes: bool = False,
        after_stage: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.after_stage = after_stage
        self.defer_writes = defer_writes
        self.judge_version = judge_version
        self.seal_rows = seal_rows
        self.seal_age_s = seal_age_s
        self.clock = clock
        self.sealed_ids: set[str] = set()
        self._read_manifests: set[str] = set()
        self.open: dict[Key, OpenShard] = {}
        self._open_ids: set[str] = set()

    @staticmethod
    def warm_up() -> None:
        """Pay pyarrow's lazy imports (pandas among them) before the first seal does."""
        for schema in ROW_SCHEMAS.values():
            pq.write_table(pa.Table.from_pylist([], schema=schema), io.BytesIO())

    def load_sealed(self) -> int:
        """Read example ids of sealed shards not read before; returns how many were new."""
        added = 0
        for component in Component:
            for m in self.store.manifests(component):
                if m.shard_id in self._read_manifests:
                    continue
                with self.store.fs.open(m.parquet, "rb") as fh:
                    ids = pq.read_table(fh, columns=["example_id"]).column(0).to_pylist()
                before = len(self.sealed_ids)
                self.sealed_ids.update(tenant_key(m.tenant_id, i) for i in ids)
                added += len(self.sealed_ids) - before
                self._read_manifests.add(m.shard_id)
        return added

    def seen(self, example_id: str, tenant: str = DEFAULT_TENANT) -> bool:
        tid = tenant_key(tenant, example_id)
        return tid in self.sealed_ids or tid in self._open_ids

    def add(
        self,
        component: str,
        split: str,
        rows: Sequence[Row],
        ticket: Ticket,
        tenant: str = DEFAULT_TENANT,
    ) -> int:
        """Buffer the rows not sealed or buffered before; returns how many were kept."""
        fresh = [r for r in rows if not self.seen(r["example_id"], tenant)]
        if len(fresh) < len(rows):
            metrics.DUPLICATES.inc(len(rows) - len(fresh))
        if not fresh:
            return 0
        key = (tenant, component, split)
        shard = self.open.get(key)
        if shard is None:
            shard = self.open[key] = OpenShard(component, split, self.clock(), tenant)
        shard.add(fresh, ticket)
        self._open_ids.update(tenant_key(tenant, r["example_id"]) for r in fresh)
        metrics.child(metrics.SHARD_OPEN_ROWS, component, split).set(len(shard.rows))
        return len(fresh)

    def due(self) -> list[Key]:
        """Open shards full enough or old enough to seal."""
        now = self.clock()
        return [
            key
            for key, shard in self.open.items()
            if len(shard.rows) >= self.seal_rows or now - shard.opened >= self.seal_age_s
        ]

    def seal(self, key: Key) -> SealedShard:
        """Take the open shard out and name it; write it now unless writes are deferred."""
        shard = self.open.pop(key)
        tenant, component, split = key
        times = [r["event_time"] for r in shard.rows]
        ids = sorted(r["example_id"] for r in shard.rows)
        tids = [tenant_key(tenant, i) for i in ids]
        now = datetime.now(UTC)
        shard_id = f"{component}-{split}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        manifest = Manifest(
            shard_id=shard_id,
            component=component,
            split=split,
            rows=len(shard.rows),
            min_event_time=min(times).isoformat(),
            max_event_time=max(times).isoformat(),
            judge_version=self.judge_version,
            source_offsets=[
                {"topic": t, "partition": p, "first_offset": lo, "last_offset": hi}
                for (t, p), (lo, hi) in sorted(shard.offsets.items())
            ],
            example_ids_sha256=hashlib.sha256("\n".join(ids).encode()).hexdigest(),
            created_at=now.isoformat(),
            tenant_id=tenant,
        )
        manifest.parquet = self.store.data_path(manifest)
        self._read_manifests.add(shard_id)
        self.sealed_ids.update(tids)
        self._open_ids.difference_update(tids)
        metrics.SHARD_OPEN_ROWS.labels(component, split).set(0)
        event = sealed_event(self.store, manifest)
        sealed = SealedShard(
            manifest, event, shard.tickets, self.store, shard.rows, self.after_stage
        )
        if not self.defer_writes:
            sealed.write()
        return sealed

    def seal_full(self) -> list[SealedShard]:
        """Seal the open shards that reached ``seal_rows``."""
        full = [key for key, shard in self.open.items() if len(shard.rows) >= self.seal_rows]
        return [self.seal(key) for key in full]

    def seal_due(self) -> list[SealedShard]:
        return [self.seal(key) for key in self.due()]

    def seal_all(self) -> list[SealedShard]:
        return [self.seal(key) for key in list(self.open)]

    def open_rows(self) -> int:
        return sum(len(s.rows) for s in self.open.values())
