"""Trainer service trigger: every N new train rows or T minutes (when there is new data)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bench.synthetic import T0, write_synthetic_shards
from kernel.events import Component, LifecycleAction, ShardSealed, Split
from kernel.shards import ShardStore
from trainers.registry import CheckpointStore, MemoryLifecycleLog, Registry
from trainers.service import CycleTrigger, parse_components, seed_trigger
from trainers.snapshot import take_snapshot

R, K = Component.RETRIEVER, Component.RANKER


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _sealed(
    shard_id: str, rows: int, split: Split = Split.TRAIN, comp: Component = R
) -> ShardSealed:
    return ShardSealed(
        shard_id=shard_id,
        component=comp,
        split=split,
        uri=f"/s/{shard_id}.parquet",
        manifest_uri=f"/s/{shard_id}.manifest.json",
        rows=rows,
        min_event_time=T0,
        max_event_time=T0,
        judge_version="rule-1",
    )


def test_every_n_examples() -> None:
    trigger = CycleTrigger([R, K], every_examples=100, every_minutes=60, clock=Clock())
    trigger.observe_event(_sealed("s1", 60))
    assert trigger.due() == []
    trigger.observe_event(_sealed("s1", 60))  # a replayed event counts once
    trigger.observe_event(_sealed("e1", 500, Split.EVAL))  # eval rows do not train
    assert trigger.due() == []
    trigger.observe_event(_sealed("s2", 40))
    assert trigger.due() == [R]
    trigger.done(R)
    assert trigger.due() == [] and trigger.pending[R] == 0


def test_every_t_minutes_only_with_new_data() -> None:
    clock = Clock()
    trigger = CycleTrigger([R], every_examples=1000, every_minutes=10, clock=clock)
    clock.now = 11 * 60
    assert trigger.due() == []  # time is up but nothing new
    trigger.observe_event(_sealed("s1", 3))
    assert trigger.due() == [R]


def test_restart_counts_only_shards_no_version_learned_from(tmp_path: Path) -> None:
    shards = ShardStore(str(tmp_path / "shards"))
    checkpoints = CheckpointStore(str(tmp_path / "ckpt"))
    write_synthetic_shards(shards, "retriever", 30, 5, shard_rows=10)
    snap = take_snapshot(shards, "retriever")
    checkpoints.save_snapshot(snap)
    registry = Registry(MemoryLifecycleLog())
    registry.register(R, "v1", "/ckpt/v1", snapshot_id=snap.snapshot_id)
    write_synthetic_shards(shards, "retriever", 7, 0, prefix="late", start=T0 + timedelta(hours=1))

    trigger = CycleTrigger([R], every_examples=5, clock=Clock())
    seed_trigger(trigger, shards, registry, checkpoints)
    assert trigger.pending[R] == 7
    assert trigger.due() == [R]
    assert registry.state().versions[R]["v1"].status is LifecycleAction.REGISTERED


def test_parse_components() -> None:
    assert parse_components("retriever, generator") == [R, Component.GENERATOR]
