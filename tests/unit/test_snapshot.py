"""Snapshots: only sealed shards, up to a watermark, with a stable id."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.synthetic import T0, write_synthetic_shards
from kernel.events import Component
from kernel.shards import ROW_SCHEMAS, ShardStore
from trainers.snapshot import SnapshotError, read_split, take_snapshot


@pytest.fixture
def store(tmp_path: Path) -> ShardStore:
    return ShardStore(str(tmp_path / "shards"))


def _half_written(store: ShardStore, shard_id: str) -> Path:
    """A Parquet file whose manifest (the seal) was never written."""
    directory = Path(store.base) / "retriever" / "train"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{shard_id}.parquet"
    pq.write_table(ROW_SCHEMAS[Component.RETRIEVER].empty_table(), path)
    return path


def test_snapshot_never_includes_an_unsealed_shard(store: ShardStore) -> None:
    sealed = write_synthetic_shards(store, "retriever", 40, 8, shard_rows=20)
    _half_written(store, "in-progress-0001")
    snap = take_snapshot(store, "retriever")
    assert "in-progress-0001" not in snap.shard_ids
    assert sorted(snap.shard_ids) == sorted(m.shard_id for m in sealed)
    assert read_split(store, snap, "train").num_rows == 40
    assert read_split(store, snap, "eval").num_rows == 8


def test_watermark_excludes_shards_sealed_later(store: ShardStore) -> None:
    write_synthetic_shards(store, "retriever", 40, 0, shard_rows=20)
    cut = T0 + timedelta(seconds=19)  # the first shard holds seconds 0..19
    snap = take_snapshot(store, "retriever", watermark=cut)
    assert snap.shard_ids == ["syn-train-0000"]
    assert snap.rows("train") == 20
    assert snap.watermark == cut.isoformat()


def test_snapshot_id_is_deterministic_and_tracks_content(store: ShardStore) -> None:
    write_synthetic_shards(store, "retriever", 20, 4)
    first, again = take_snapshot(store, "retriever"), take_snapshot(store, "retriever")
    assert first.snapshot_id == again.snapshot_id
    write_synthetic_shards(store, "retriever", 20, 0, prefix="more", start=T0 + timedelta(hours=1))
    assert take_snapshot(store, "retriever").snapshot_id != first.snapshot_id


def test_snapshot_records_lineage(store: ShardStore) -> None:
    write_synthetic_shards(store, "retriever", 20, 4)
    summary = take_snapshot(store, "retriever").summary()
    assert summary["train_rows"] == 20 and summary["eval_rows"] == 4
    shard = summary["shards"][0]
    assert shard["source_offsets"][0]["topic"] == "synthetic"
    assert shard["judge_version"] == "synthetic-judge-1"


def test_sealed_shard_with_missing_data_is_an_error(store: ShardStore) -> None:
    (manifest,) = write_synthetic_shards(store, "retriever", 5, 0)
    Path(manifest.parquet).unlink()
    with pytest.raises(SnapshotError, match="missing"):
        take_snapshot(store, "retriever")


def test_row_count_mismatch_is_detected(store: ShardStore) -> None:
    (manifest,) = write_synthetic_shards(store, "retriever", 5, 0)
    snap = take_snapshot(store, "retriever")
    table = pq.read_table(manifest.parquet)
    pq.write_table(pa.concat_tables([table, table]), manifest.parquet)  # rewritten behind our back
    with pytest.raises(SnapshotError, match="rows on disk"):
        read_split(store, snap, "train")
