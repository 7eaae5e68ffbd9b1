"""Trainer benchmark: retriever pairs/s, generator ORPO steps/s, one full cycle's time.

The cycle is the retriever's (snapshot -> one epoch of MNRL training -> evaluation of
candidate and serving version -> gate -> lifecycle events) on 2,000 synthetic sealed
train examples plus a 200-example eval slice; with a broker the events go to its models
topic, without one to an in-memory log. ORPO steps/s is a LoRA run (batch 2) on the stock
generator on CPU, or QLoRA when CUDA is available.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any, cast

from bench.synthetic import synthetic_kb, write_synthetic_shards
from kernel.models import resolve_generator
from kernel.settings import KafkaSettings, Settings
from kernel.shards import GeneratorRow, ShardStore
from trainers.config import CycleConfig, GeneratorConfig, RetrieverConfig
from trainers.cycle import run_cycle
from trainers.generator import train_generator
from trainers.registry import KafkaLifecycleLog, MemoryLifecycleLog, Registry
from trainers.snapshot import read_split, rows_of, take_snapshot

CYCLE_EXAMPLES = 2000
EVAL_EXAMPLES = 200
ORPO_STEPS = 8


def _registry(bootstrap: str | None) -> tuple[Registry, KafkaSettings]:
    kafka = KafkaSettings(bootstrap=bootstrap, topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.")
    if bootstrap is None:
        return Registry(MemoryLifecycleLog()), kafka
    from streams.admin import ensure_topics

    ensure_topics(kafka)
    return Registry(KafkaLifecycleLog(kafka)), kafka


def run(bootstrap: str | None) -> dict[str, Any]:
    """Measure and return the JSON-able results (keys as in the trainers issue)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    with tempfile.TemporaryDirectory(prefix="aitl-bench-trainers-") as tmp:
        root = Path(tmp)
        registry, kafka = _registry(bootstrap)
        settings = Settings(
            kafka=kafka, shard_store=str(root / "shards"), checkpoint_store=str(root / "ckpt")
        )
        shards = ShardStore(settings.shard_store)
        write_synthetic_shards(shards, "retriever", CYCLE_EXAMPLES, EVAL_EXAMPLES)
        config = CycleConfig(
            retriever=RetrieverConfig(epochs=1.0, batch_size=32, learning_rate=5e-5),
            progress=False,
        )
        cycle = run_cycle(
            "retriever", settings=settings, registry=registry, config=config, kb=synthetic_kb()
        )

        write_synthetic_shards(shards, "generator", 32, 0)
        snap = take_snapshot(shards, "generator")
        rows = cast(list[GeneratorRow], rows_of(read_split(shards, snap, "train")))
        gen_cfg = GeneratorConfig(max_steps=ORPO_STEPS, batch_size=2)
        orpo = train_generator(
            rows, resolve_generator(settings.generator_model), root / "gen", gen_cfg, progress=False
        )

    return {
        "retriever_pairs_per_s": round(cycle.train.examples_per_s, 2),
        "generator_orpo_steps_per_s": round(orpo.steps_per_s, 4),
        "cycle_seconds": round(cycle.seconds["total"], 1),
        "cycle": {
            "component": "retriever",
            "action": cycle.action.value,
            "train_examples": cycle.snapshot.rows("train"),
            "eval_examples": cycle.snapshot.rows("eval"),
            "steps": cycle.train.steps,
            "seconds": {k: round(v, 1) for k, v in cycle.seconds.items()},
            "mrr": [
                round(cycle.baseline.get("mrr", 0.0), 4),
                round(cycle.metrics.get("mrr", 0.0), 4),
            ],
            "lifecycle": "kafka" if bootstrap else "memory",
        },
        "generator": {
            "steps": orpo.steps,
            "batch_size": gen_cfg.batch_size,
            "quantized_4bit": orpo.extra.get("quantized_4bit", False),
        },
        "device": "cuda"
        if torch.cuda.is_available()
        else f"cpu x{torch.get_num_threads()} threads",
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else None), indent=2))
