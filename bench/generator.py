"""The serving generator on this CPU: float32 against bfloat16, same model, same prompts.

Decode speed (new tokens/s, one prompt and a batch of four) and the quality of what is
decoded (helpfulness and adoption against the human reference, the demo's yardstick) on
the demo's cases with their gold knowledge shown, so the two dtypes see identical prompts.
bfloat16 is measured only where the CPU multiplies it natively (AMX / AVX512-BF16).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from aitl.flywheel.evaluate import stock_embedder
from aitl.flywheel.quality import Reply, reply_quality
from kernel.checkpoints import ModelSpec
from kernel.prompt import Snippet
from kernel.settings import Settings
from serving.generator import Generator, cpu_has_bf16, load_generator
from serving.knowledge.dataset import Case, load_dstc
from serving.knowledge.demo_data import generate_demo

CASES = 96
MAX_NEW_TOKENS = 40


def _requests(cases: list[Case], texts: dict[str, str]) -> list[Any]:
    out = []
    for case in cases:
        *earlier, last = case.history or [("U", case.query)]
        snippets = [Snippet(k, texts[k]) for k in case.gold_ids[:3] if k in texts]
        out.append((last[1], list(earlier), snippets))
    return out


def _speed(gen: Generator, requests: list[Any], batch: int) -> float:
    gen.generate_many(requests[:batch])  # warm
    started, tokens = time.perf_counter(), 0
    for i in range(0, 4 * batch, batch):
        done = gen.generate_many(requests[i : i + batch])
        tokens += sum(g.new_tokens for g in done)
    return tokens / (time.perf_counter() - started)


def _quality(gen: Generator, requests: list[Any], cases: list[Case]) -> dict[str, float]:
    replies = []
    for i in range(0, len(requests), 8):
        for g in gen.generate_many(requests[i : i + 8]):
            replies.append([Reply(r.text, tuple(r.cited_knowledge_ids)) for r in g.replies[:1]])
    return reply_quality(
        replies, [c.reference for c in cases], [c.gold_ids for c in cases], stock_embedder()
    )


def run(bootstrap: str) -> dict[str, Any]:
    del bootstrap  # no broker needed
    data = generate_demo(Path(tempfile.mkdtemp(prefix="aitl-gen-")) / "data", n_cases=CASES)
    dataset = load_dstc(data, name="demo")
    texts = {k.id: k.text for k in dataset.knowledge}
    cases = [c for c in dataset.cases if c.gold_ids][:CASES]
    requests = _requests(cases, texts)
    model = Settings().generator_model
    dtypes = ["float32", *(["bfloat16"] if cpu_has_bf16() else [])]
    out: dict[str, Any] = {"cases": len(cases), "max_new_tokens": MAX_NEW_TOKENS}
    for dtype in dtypes:
        gen = load_generator(
            ModelSpec(),
            model,
            max_new_tokens=MAX_NEW_TOKENS,
            variant_b="extractive",
            cpu_dtype=dtype,
        )
        quality = _quality(gen, requests, cases)
        out[dtype] = {
            "tokens_per_s_batch_1": round(_speed(gen, requests, 1), 1),
            "tokens_per_s_batch_4": round(_speed(gen, requests, 4), 1),
            **{k: round(v, 4) for k, v in quality.items()},
        }
    if "bfloat16" in out:
        b, f = out["bfloat16"], out["float32"]
        out["bf16_vs_fp32_speed_batch_4"] = round(
            b["tokens_per_s_batch_4"] / f["tokens_per_s_batch_4"], 2
        )
        out["bf16_minus_fp32_helpfulness"] = round(b["helpfulness"] - f["helpfulness"], 4)
    out["note"] = "reply A only; gold knowledge shown; greedy decoding"
    return out
