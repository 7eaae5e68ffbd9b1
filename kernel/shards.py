"""The shard store: the contract between the processors (writers) and trainers (readers).

Layout under the store root (a local dir or any fsspec URL)::

    <root>/<component>/<split>/<shard_id>.parquet
    <root>/<component>/<split>/<shard_id>.manifest.json   # written last: the seal

A shard is *sealed* once its manifest exists; the manifest is written only after the
Parquet file is durable, so a reader that lists manifests never sees a half-written
shard. Component dirs are :attr:`Component.slug` (``retriever``, ...); splits ``train``/``eval``.
The row types below are checked against their Avro contracts in ``schemas/rows/`` by a
unit test; the Arrow schemas are generated from those contracts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, TypedDict

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from kernel.envelope import DEFAULT_TENANT
from kernel.messages import Component
from kernel.schemas import row_schema

SPLITS = ("train", "eval")


class RowCommon(TypedDict):
    """The fields every training row has."""

    example_id: str  # deterministic: annotation event id + suffix
    source_event_ids: list[str]
    case_id: str
    request_id: str
    event_time: datetime
    weight: float


class RetrieverRow(RowCommon):
    """query -> one positive knowledge text; hard negatives = shown objects marked irrelevant"""

    query: str
    positive_id: str
    positive_text: str
    negative_ids: list[str]
    negative_texts: list[str]


class RankerRow(RowCommon):
    """query, knowledge object, graded label (RELEVANT 1.0, PARTIAL 0.5, IRRELEVANT 0.0)"""

    query: str
    knowledge_id: str
    text: str
    label: float


class GeneratorRow(RowCommon):
    """ORPO pair: prompt (with the knowledge shown), chosen, rejected, and the rationale"""

    prompt: str
    chosen: str
    rejected: str
    rationale: str
    rationale_category: str
    knowledge_ids: list[str]


Row = RetrieverRow | RankerRow | GeneratorRow
# The Arrow schemas, generated from the row contracts in schemas/rows/*.avsc
ROW_SCHEMAS: dict[Component, pa.Schema] = {c: row_schema(c.slug) for c in Component}
ROW_TYPES: dict[Component, type[Row]] = {
    Component.RETRIEVER: RetrieverRow,
    Component.RANKER: RankerRow,
    Component.GENERATOR: GeneratorRow,
}


@dataclass
class Manifest:
    shard_id: str
    component: str
    split: str
    rows: int
    min_event_time: str  # ISO 8601
    max_event_time: str
    judge_version: str
    source_offsets: list[dict[str, Any]] = field(default_factory=list)  # topic/partition/first/last
    example_ids_sha256: str = ""
    created_at: str = ""
    parquet: str = ""
    tenant_id: str = DEFAULT_TENANT  # every row of a shard is one tenant's

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


class ShardStore:
    """Write and list sealed shards on a local dir or fsspec URL."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        self.fs, self.base = fsspec.core.url_to_fs(self.root)

    def _dir(self, component: str | Component, split: str) -> str:
        if split not in SPLITS:
            raise ValueError(f"unknown shard split {split!r}; known: {', '.join(SPLITS)}")
        return f"{self.base}/{Component.parse(component).slug}/{split}"

    def data_path(self, manifest: Manifest) -> str:
        """Where a shard's Parquet file goes (known before it is written)."""
        return f"{self._dir(manifest.component, manifest.split)}/{manifest.shard_id}.parquet"

    def write(
        self,
        manifest: Manifest,
        rows: Sequence[Mapping[str, object]],
        after: Callable[[str], None] | None = None,
    ) -> Manifest:
        """Write the Parquet file, then the manifest (the seal). Idempotent per shard id.

        ``after(stage)`` runs after each stage (``begin``, ``parquet_renamed``,
        ``manifest_written``): the processors' fault injection crashes there.
        """
        step = after or (lambda _stage: None)
        step("begin")
        d = self._dir(manifest.component, manifest.split)
        self.fs.makedirs(d, exist_ok=True)
        data_path = self.data_path(manifest)
        tmp_path = data_path + ".tmp"
        schema = ROW_SCHEMAS[Component.parse(manifest.component)]
        table = pa.Table.from_pylist(list(rows), schema=schema)
        with self.fs.open(tmp_path, "wb") as fh:
            pq.write_table(table, fh)
        self.fs.mv(tmp_path, data_path)
        step("parquet_renamed")
        manifest.parquet = data_path
        manifest.rows = table.num_rows
        man_tmp = f"{d}/{manifest.shard_id}.manifest.json.tmp"
        with self.fs.open(man_tmp, "w") as fh:
            fh.write(manifest.to_json())
        self.fs.mv(man_tmp, f"{d}/{manifest.shard_id}.manifest.json")
        step("manifest_written")
        return manifest

    def manifests(self, component: str | Component, split: str | None = None) -> list[Manifest]:
        """Sealed shards, oldest first by (max_event_time, shard_id)."""
        out = []
        for sp in (split,) if split else SPLITS:
            d = self._dir(component, sp)
            if not self.fs.exists(d):
                continue
            for path in self.fs.glob(f"{d}/*.manifest.json"):
                with self.fs.open(path, "r") as fh:
                    out.append(Manifest(**json.load(fh)))
        return sorted(out, key=lambda m: (m.max_event_time, m.shard_id))

    def read(self, manifests: Iterable[Manifest]) -> pa.Table:
        tables = []
        for m in manifests:
            with self.fs.open(m.parquet, "rb") as fh:
                tables.append(pq.read_table(fh))
        if not tables:
            return ROW_SCHEMAS[Component.RETRIEVER].empty_table()
        return pa.concat_tables(tables)
