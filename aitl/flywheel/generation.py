"""The generator in the benchmark: train it on the run's judged preference pairs, then
compare its replies with the stock generator's on held-out cases.

Why this shape:

* **Training** is the project's own trainer (:func:`trainers.generator.train_generator`:
  ORPO + LoRA, full precision on CPU) on the generator *train* split of the run's shard
  store, always from the stock model, so the number measures what one run's judged pairs
  teach, not an accumulation of earlier runs.
* **Decoding** goes through serving's own loader and prompt (:func:`load_generator` on a
  checkpoint directory with a model card, :meth:`Generator.generate_many` with the
  knowledge serving *showed*, not the gold), greedy, so stock and trained see the very
  same prompts and differ only in weights. Only reply A is decoded (the trained prompt
  style; B is made extractive, which costs nothing).
* **Scoring** is a fixed yardstick that neither model influences: the stock MiniLM cosine
  to the human reference (0.8) plus citation precision against the gold (0.2), the same
  reference-based helpfulness the benchmark reports, per case so the caller can
  bootstrap confidence intervals on the paired differences.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from aitl.flywheel.evaluate import stock_embedder
from aitl.flywheel.quality import Embed, Reply, reply_scores
from kernel.checkpoints import ModelSpec
from kernel.lifecycle import write_model_card
from kernel.models import resolve_generator
from kernel.prompt import Snippet
from kernel.settings import Settings
from kernel.shards import GeneratorRow, ShardStore
from serving.generator import GENERATOR_KIND, GenerationRequest, load_generator
from serving.knowledge.dataset import Case
from trainers.config import GeneratorConfig
from trainers.generator import preference_examples, train_generator
from trainers.snapshot import read_split, rows_of, take_snapshot

SCORER = "reference similarity (stock MiniLM cosine 0.8 + citation precision 0.2)"
MIN_PAIRS = 8  # below this a LoRA run learns noise; the comparison would be meaningless
TIE_MARGIN = 0.005  # helpfulness differences smaller than this are ties
MAX_NEW_TOKENS = 48
BATCH = 8
N_KNOWLEDGE = 3  # what serving shows (Settings.prompt_knowledge)
TRAINED_VERSION = "generator-benchmark"

Progress = Callable[[str], None]


def usable_pairs(rows: Sequence[GeneratorRow], config: GeneratorConfig) -> int:
    """Distinct preference pairs the trainer would keep (weight floor, non-empty, chosen
    differs from rejected), counted with the trainer's own filter, rationale boost off."""
    plain = replace(config, rationale_boost=1, use_chat_template=False)
    return len(preference_examples(rows, None, plain)["prompt"])


def requests_of(
    cases: Sequence[Case], shown: Sequence[Sequence[str]], texts: Mapping[str, str]
) -> list[GenerationRequest]:
    """Serving's generation requests: the customer's last message, the turns before it,
    and the first knowledge objects serving showed (ids without text are skipped)."""
    out: list[GenerationRequest] = []
    for case, ids in zip(cases, shown, strict=True):
        *earlier, last = case.history or [("U", case.query)]
        snippets = [Snippet(k, texts[k]) for k in ids if k in texts][:N_KNOWLEDGE]
        out.append((last[1], list(earlier), snippets))
    return out


def decode(spec: ModelSpec, stock_model: str, requests: Sequence[GenerationRequest]) -> list[Reply]:
    """Reply A for each request from the generator ``spec`` names, loaded as serving
    loads it (bf16 on a CPU that multiplies it natively), greedy, in batches of 8."""
    gen = load_generator(
        spec,
        stock_model,
        max_new_tokens=MAX_NEW_TOKENS,
        n_knowledge=N_KNOWLEDGE,
        variant_b="extractive",
        cpu_dtype="auto",
    )
    replies: list[Reply] = []
    for i in range(0, len(requests), BATCH):
        for g in gen.generate_many(requests[i : i + BATCH]):
            a = g.replies[0]
            replies.append(Reply(a.text, tuple(a.cited_knowledge_ids)))
    del gen
    gc.collect()
    return replies


def outcome_rates(stock: Sequence[float], trained: Sequence[float]) -> dict[str, float]:
    """Paired win/loss/tie shares: trained wins a case when its helpfulness beats the
    stock's by more than ``TIE_MARGIN``, loses when it trails by more."""
    if len(stock) != len(trained):
        raise ValueError("need one stock and one trained score per case")
    n = len(stock) or 1
    wins = sum(t > s + TIE_MARGIN for s, t in zip(stock, trained, strict=True))
    losses = sum(t < s - TIE_MARGIN for s, t in zip(stock, trained, strict=True))
    ties = len(stock) - wins - losses
    return {"win_rate": wins / n, "loss_rate": losses / n, "tie_rate": ties / n}


def _mean(scores: Sequence[Mapping[str, float]], key: str) -> float:
    return sum(s[key] for s in scores) / len(scores) if scores else 0.0


def compare(
    stock: Sequence[Reply],
    trained: Sequence[Reply],
    cases: Sequence[Case],
    embed: Embed,
) -> dict[str, Any]:
    """The result's comparison part: mean scores per model, rates, per-case helpfulness."""
    refs = [c.reference for c in cases]
    golds = [c.gold_ids for c in cases]
    s = reply_scores([[r] for r in stock], refs, golds, embed)
    t = reply_scores([[r] for r in trained], refs, golds, embed)
    per_case = {
        "stock": [x["helpfulness"] for x in s],
        "trained": [x["helpfulness"] for x in t],
    }
    return {
        "stock": {k: _mean(s, k) for k in ("helpfulness", "adoption")},
        "trained": {k: _mean(t, k) for k in ("helpfulness", "adoption")},
        **outcome_rates(per_case["stock"], per_case["trained"]),
        "per_case": per_case,
    }


def _skipped(n: int, train: dict[str, Any], why: str) -> dict[str, Any]:
    empty = {"helpfulness": None, "adoption": None}
    return {
        "cases": n,
        "scorer": SCORER,
        "skipped": why,
        "train": train,
        "stock": dict(empty),
        "trained": dict(empty),
        "win_rate": None,
        "loss_rate": None,
        "tie_rate": None,
        "per_case": {"stock": [], "trained": []},
        "seconds": {"train": 0.0, "decode": 0.0},
    }


def generator_eval(
    store_root: str,
    cases: Sequence[Case],
    shown: Sequence[Sequence[str]],
    texts: Mapping[str, str],
    *,
    max_cases: int = 64,
    epochs: float = 1.0,
    max_steps: int = -1,
    seed: int = 11,
    workdir: Path,
    progress: Progress | None = None,
    config: GeneratorConfig | None = None,
    stock_model: str | None = None,
    embed: Embed | None = None,
) -> dict[str, Any]:
    """Train the generator on the store's judged pairs and compare it with the stock one.

    ``config`` overrides the trainer's defaults (its epochs/max_steps/seed are replaced by
    the arguments); ``stock_model`` defaults to ``Settings().generator_model``; ``embed``
    to the stock embedder. With fewer than ``MIN_PAIRS`` usable pairs nothing is trained
    and the result says why under ``"skipped"``.
    """
    say = progress or (lambda _msg: None)
    stock_name = stock_model or Settings().generator_model
    cfg = replace(config or GeneratorConfig(), epochs=epochs, max_steps=max_steps, seed=seed)
    if len(shown) != len(cases):
        raise ValueError("need the shown knowledge ids of every case")
    cases, shown = list(cases[:max_cases]), list(shown[:max_cases])
    store = ShardStore(store_root)
    snap = take_snapshot(store, "generator")
    rows = cast(list[GeneratorRow], rows_of(read_split(store, snap, "train")))
    pairs = usable_pairs(rows, cfg)
    train: dict[str, Any] = {"pairs": pairs, "steps": 0, "seconds": 0.0, "base_model": stock_name}
    if pairs < MIN_PAIRS:
        why = f"{pairs} usable preference pairs in {len(rows)} train rows (< {MIN_PAIRS})"
        say(f"generator: skipped, {why}")
        return _skipped(len(cases), train, why)
    if not cases:
        return _skipped(0, train, "no held-out cases")

    checkpoint = workdir / "generator-checkpoint"
    checkpoint.mkdir(parents=True, exist_ok=True)
    say(f"generator: ORPO+LoRA on {pairs} pairs ({len(rows)} rows) from {stock_name}")
    t0 = time.perf_counter()
    result = train_generator(rows, resolve_generator(stock_name), checkpoint, cfg, progress=False)
    train_s = time.perf_counter() - t0
    # a model card makes the directory a checkpoint serving loads: adapter on base_model
    write_model_card(
        checkpoint,
        component="generator",
        version=TRAINED_VERSION,
        kind=GENERATOR_KIND,
        adapter=True,
        base_model=stock_name,
        snapshot_id=snap.snapshot_id,
    )
    train |= {"steps": result.steps, "seconds": round(train_s, 1)}
    say(f"generator: trained {result.steps} steps in {train_s:.0f} s")
    gc.collect()

    requests = requests_of(cases, shown, texts)
    t0 = time.perf_counter()
    say(f"generator: decoding {len(requests)} cases with the stock model")
    stock = decode(ModelSpec(), stock_name, requests)
    say(f"generator: decoding {len(requests)} cases with the trained model")
    trained = decode(ModelSpec(TRAINED_VERSION, str(checkpoint)), stock_name, requests)
    decode_s = time.perf_counter() - t0
    say(f"generator: decoded 2 x {len(requests)} replies in {decode_s:.0f} s; scoring")
    out = compare(stock, trained, cases, embed or stock_embedder())
    return {
        "cases": len(cases),
        "scorer": SCORER,
        "train": train,
        **out,
        "seconds": {"train": round(train_s, 1), "decode": round(decode_s, 1)},
    }
