"""Helpers shared by the trainers; nothing outside ``trainers/`` imports this module."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from kernel.text import tokens

log = logging.getLogger("trainers")
Row = TypeVar("Row", bound=dict[str, Any])


@dataclass
class TrainResult:
    """What one training run did: steps, throughput and the loss curve."""

    base_model: str
    examples: int
    steps: int
    seconds: float
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def examples_per_s(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else 0.0

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self, max_points: int = 100) -> dict[str, Any]:
        """JSON-able summary; the loss curve thinned to ``max_points`` (it goes on events)."""
        out = asdict(self)
        stride = max(1, -(-len(self.loss_history) // max_points))
        out["loss_history"] = self.loss_history[::stride]
        out["examples_per_s"] = self.examples_per_s
        out["steps_per_s"] = self.steps_per_s
        return out


def trainer_outcome(
    trainer: Any, examples_per_step: int
) -> tuple[int, float, list[tuple[int, float]]]:
    """(steps, train seconds, [(step, loss)]) from a finished transformers Trainer."""
    history = trainer.state.log_history
    losses = [(int(h["step"]), float(h["loss"])) for h in history if "loss" in h and "step" in h]
    runtime = next((float(h["train_runtime"]) for h in history if "train_runtime" in h), 0.0)
    return int(trainer.state.global_step), runtime, losses


def common_args(
    *,
    output_dir: str,
    epochs: float,
    max_steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    progress: bool,
    warmup: float = 0.0,
) -> dict[str, Any]:
    """TrainingArguments shared by every trainer: no checkpoints mid-run, no trackers."""
    return {
        "output_dir": output_dir,
        "num_train_epochs": epochs,
        "max_steps": max_steps,
        "per_device_train_batch_size": batch_size,
        "learning_rate": learning_rate,
        "warmup_steps": warmup,
        "seed": seed,
        "save_strategy": "no",
        "report_to": "none",
        "logging_steps": 1,
        "disable_tqdm": not progress,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": cuda_available(),
    }


def quiet(trainer: Any, progress: bool) -> Any:
    """Never print every logged step: without progress bars the trainer stays silent;
    with them, the loss shows in the bar instead of a raw dict per step."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    if not progress:
        trainer.remove_callback(PrinterCallback)
        return trainer
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_loss_in_bar())
    return trainer


def _loss_in_bar() -> Any:
    """A ProgressCallback whose bar carries the latest losses as its postfix."""
    from transformers.trainer_callback import ProgressCallback

    class LossInBar(ProgressCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            bar = self.training_bar
            if not state.is_world_process_zero or bar is None or not logs:
                return
            shown = {
                k: round(float(v), 4)
                for k, v in logs.items()
                if isinstance(v, int | float) and (k == "loss" or k.endswith("_loss"))
            }
            if shown:
                bar.set_postfix(shown, refresh=False)

    return LossInBar()


def kept(rows: Iterable[dict[str, Any]], min_weight: float) -> list[dict[str, Any]]:
    """Rows whose judge weight is at least ``min_weight`` (missing weight counts as 1)."""
    out = []
    for row in rows:
        weight = row.get("weight")
        if (1.0 if weight is None else float(weight)) >= min_weight and (
            weight is None or weight > 0
        ):
            out.append(row)
    return out


def row_weight(row: dict[str, Any]) -> float:
    """A row's judge weight; a missing one counts as 1 (rows from before the judge)."""
    weight = row.get("weight")
    return 1.0 if weight is None else max(0.0, float(weight))


def resample(rows: list[Row], use_weights: bool, seed: int) -> list[Row]:
    """The judge weights reaching the loss: a seeded draw of ``len(rows)`` rows, each
    row's expected count ``len(rows) * weight / sum(weights)``.

    Why sampling and not a per-example loss weight: MNRL (retriever), CoSENT (embedding
    ranker) and ORPO (generator) score a row against the others in its batch, where a
    per-row weight has no clean meaning and sentence-transformers/TRL take none; sampling
    works the same way for every loss. The draw is *systematic* (one uniform offset,
    evenly spaced points on the cumulative weights) rather than independent: counts are
    the floor or ceiling of the expected count, so with equal weights (or a run without a
    judge) every row appears exactly once, in its order, as it did before weights
    counted. ``use_weights=False`` (the ablation) returns the rows unchanged: every row
    counts once whatever its weight. Rows of weight 0 are dropped before (``kept``).
    """
    if not use_weights or not rows:
        return list(rows)
    weights = [row_weight(r) for r in rows]
    total = sum(weights)
    if total <= 0:
        return []
    n = len(rows)
    offset = random.Random(seed).random()
    out: list[Row] = []
    cumulative = 0.0
    point = 0  # points (offset + k) * total / n for k = 0 .. n - 1
    for row, weight in zip(rows, weights, strict=True):
        cumulative += weight
        while point < n and (offset + point) * total / n < cumulative:
            out.append(row)
            point += 1
    while point < n:  # float rounding left the last point just past the end
        out.append(rows[-1])
        point += 1
    return out


def words(text: str) -> set[str]:
    return set(tokens(text))


def overlap_neighbours(
    query: str, kb: Sequence[tuple[str, str]], exclude: set[str], n: int, kb_words: list[set[str]]
) -> list[str]:
    """Ids of the ``n`` knowledge objects sharing the most words with ``query`` (ties by id)."""
    if n <= 0:
        return []
    q = words(query)
    scored = [
        (-len(q & kw) / (len(kw) ** 0.5 or 1.0), kid)
        for (kid, _), kw in zip(kb, kb_words, strict=True)
        if kid not in exclude
    ]
    scored.sort()
    return [kid for _, kid in scored[:n]]


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())
