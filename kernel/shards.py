"""The shard store: the contract between the processors (writers) and trainers (readers).

Layout under the store root (a local dir or any fsspec URL)::

    <root>/<component>/<split>/<shard_id>.parquet
    <root>/<component>/<split>/<shard_id>.manifest.json   # written last: the seal

A shard is *sealed* once its manifest exists; the manifest is written only after the
Parquet file is durable, so a reader that lists manifests never sees a half-written
shard. Components are ``retriever``, ``ranker``, ``generator``; splits ``train``/``eval``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

COMPONENTS = ("retriever", "ranker", "generator")
SPLITS = ("train", "eval")

_COMMON = [
    ("example_id", pa.string()),  # deterministic: annotation event id + suffix
    ("source_event_ids", pa.list_(pa.string())),
    ("case_id", pa.string()),
    ("request_id", pa.string()),
    ("event_time", pa.timestamp("ms", tz="UTC")),
    ("weight", pa.float32()),
]

ROW_SCHEMAS: dict[str, pa.Schema] = {
    # query -> one positive knowledge text, hard negatives = shown objects marked irrelevant
    "retriever": pa.schema(
        [
            *_COMMON,
            ("query", pa.string()),
            ("positive_id", pa.string()),
            ("positive_text", pa.string()),
            ("negative_ids", pa.list_(pa.string())),
            ("negative_texts", pa.list_(pa.string())),
        ]
    ),
    # query, knowledge object, graded label (RELEVANT 1.0, PARTIAL 0.5, IRRELEVANT 0.0)
    "ranker": pa.schema(
        [
            *_COMMON,
            ("query", pa.string()),
            ("knowledge_id", pa.string()),
            ("text", pa.string()),
            ("label", pa.float32()),
        ]
    ),
    # ORPO pairs: prompt (with the knowledge shown), chosen, rejected, and the rationale
    "generator": pa.schema(
        [
            *_COMMON,
            ("prompt", pa.string()),
            ("chosen", pa.string()),
            ("rejected", pa.string()),
            ("rationale", pa.string()),
            ("rationale_category", pa.string()),
            ("knowledge_ids", pa.list_(pa.string())),
        ]
    ),
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

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


class ShardStore:
    """Write and list sealed shards on a local dir or fsspec URL."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        self.fs, self.base = fsspec.core.url_to_fs(self.root)

    def _dir(self, component: str, split: str) -> str:
        if component not in COMPONENTS or split not in SPLITS:
            raise ValueError(f"unknown shard {component}/{split}")
        return f"{self.base}/{component}/{split}"

    def data_path(self, manifest: Manifest) -> str:
        """Where a shard's Parquet file goes (known before it is written)."""
        return f"{self._dir(manifest.component, manifest.split)}/{manifest.shard_id}.parquet"

    def write(self, manifest: Manifest, rows: list[dict[str, Any]]) -> Manifest:
        """Write the Parquet file, then the manifest (the seal). Idempotent per shard id."""
        d = self._dir(manifest.component, manifest.split)
        self.fs.makedirs(d, exist_ok=True)
        data_path = self.data_path(manifest)
        tmp_path = data_path + ".tmp"
        table = pa.Table.from_pylist(rows, schema=ROW_SCHEMAS[manifest.component])
        with self.fs.open(tmp_path, "wb") as fh:
            pq.write_table(table, fh)
        self.fs.mv(tmp_path, data_path)
        manifest.parquet = data_path
        manifest.rows = table.num_rows
        man_tmp = f"{d}/{manifest.shard_id}.manifest.json.tmp"
        with self.fs.open(man_tmp, "w") as fh:
            fh.write(manifest.to_json())
        self.fs.mv(man_tmp, f"{d}/{manifest.shard_id}.manifest.json")
        return manifest

    def manifests(self, component: str, split: str | None = None) -> list[Manifest]:
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
            return ROW_SCHEMAS["retriever"].empty_table()
        return pa.concat_tables(tables)


def iso(ts: datetime) -> str:
    return ts.isoformat()
