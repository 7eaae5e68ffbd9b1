"""Generator: ORPO preference tuning with a LoRA adapter (QLoRA on CUDA).

TRL's ``ORPOTrainer`` (``trl.experimental.orpo`` in TRL 1.x) trains on (prompt, chosen,
rejected) with a ``peft_config``: on CUDA the base is loaded 4-bit NF4 by bitsandbytes
(QLoRA), on CPU in full precision. Each cycle trains a fresh adapter on the base model
from the cumulative snapshot, so an adapter never stacks on another.

**The adoption rationale is a weighting signal.** It is not put in the prompt: at serving
time there is no rationale, and conditioning on one would train on inputs the model never
sees. Instead a pair whose rationale names a substantive flaw of the rejected reply
(INACCURATE, INCOMPLETE, POLICY, IRRELEVANT) and is not boilerplate is repeated
``rationale_boost`` times, so ORPO sees the preferences agents justified most often;
TONE/OTHER/ACCURATE pairs and empty rationales count once. Pairs below the judge weight
floor are dropped; the others are drawn in proportion to their judge weight
(``_internal.resample``, ``use_weights``) before the rationale boost.

Evaluation generates replies from the candidate and the serving model on eval prompts,
judges each pair in both orders (win rate), and measures each model's similarity to the
agents' sent replies and its log-odds margin of chosen over rejected replies.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kernel.errors import ModelError
from kernel.shards import GeneratorRow
from trainers._internal import (
    TrainResult,
    common_args,
    cuda_available,
    kept,
    quiet,
    resample,
    trainer_outcome,
    words,
)
from trainers.config import GeneratorConfig
from trainers.judges import JudgedPair, PairwiseJudge, ReferenceSimilarityJudge, judge_pairs
from trainers.metrics import win_rate
from trainers.retriever import NoTrainingData

KIND = "causal-lm"
ADAPTER_DIR = "adapter"
SUBSTANTIVE = frozenset({"INACCURATE", "INCOMPLETE", "POLICY", "IRRELEVANT"})
BOILERPLATE = frozenset(
    {"", "ok", "okay", "fine", "good", "bad", "n/a", "na", "none", "-", "no", "yes"}
)


def rationale_repeats(row: Mapping[str, Any], boost: int) -> int:
    """How many times a pair enters training (see the module docstring)."""
    text = (row.get("rationale") or "").strip().lower()
    informative = text not in BOILERPLATE and len(words(text)) >= 3
    return boost if informative and row.get("rationale_category") in SUBSTANTIVE else 1


def prompt_messages(prompt: str) -> list[dict[str, str]]:
    """Chat messages of a shard prompt: a JSON list of {role, content} (the serving
    generator's exact messages, system turn with the knowledge included) or plain text,
    which becomes one user turn."""
    if prompt.lstrip().startswith("["):
        try:
            messages = json.loads(prompt)
        except json.JSONDecodeError:
            messages = None
        if isinstance(messages, list) and all(
            isinstance(m, dict) and {"role", "content"} <= set(m) for m in messages
        ):
            return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
    return [{"role": "user", "content": prompt}]


def render_prompt(tokenizer: Any, prompt: str, use_chat_template: bool) -> str:
    """The exact text the model continues, identical in training and generation."""
    messages = prompt_messages(prompt)
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        rendered = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return str(rendered)
    return "\n\n".join(m["content"] for m in messages)


def preference_examples(
    rows: Sequence[GeneratorRow], tokenizer: Any, config: GeneratorConfig
) -> dict[str, list[str]]:
    """ORPO columns (prompt, chosen, rejected), rationale-boosted, prompts rendered."""
    out: dict[str, list[str]] = {"prompt": [], "chosen": [], "rejected": []}
    usable = [
        r
        for r in kept([dict(r) for r in rows], config.min_weight)
        if r["prompt"] and r["chosen"] and r["rejected"] and r["chosen"] != r["rejected"]
    ]
    for r in resample(usable, config.use_weights, config.seed):
        prompt = render_prompt(tokenizer, r["prompt"], config.use_chat_template)
        for _ in range(rationale_repeats(r, config.rationale_boost)):
            out["prompt"].append(prompt)
            out["chosen"].append(r["chosen"])
            out["rejected"].append(r["rejected"])
    return out


def load_base(path: str, quantization: str = "auto") -> tuple[Any, Any, bool]:
    """(model, tokenizer, quantized): 4-bit NF4 on CUDA when asked or auto."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    quantize = quantization == "4bit" or (quantization == "auto" and cuda_available())
    if quantize:
        if not cuda_available():
            raise ModelError("4-bit QLoRA needs CUDA; use quantization='none' on CPU")
        from transformers import BitsAndBytesConfig

        bnb = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        )
        model = AutoModelForCausalLM.from_pretrained(
            path, quantization_config=bnb, device_map={"": 0}, dtype=torch.bfloat16
        )
    else:
        device = "cuda" if cuda_available() else "cpu"
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        model = model.to(device)  # type: ignore[arg-type]
    return model, tokenizer, quantize


def train_generator(
    rows: Sequence[GeneratorRow],
    base_path: str,
    out_dir: Path,
    config: GeneratorConfig,
    *,
    progress: bool = True,
) -> TrainResult:
    """Train a LoRA adapter with ORPO; save it to ``out_dir/adapter`` (+ the tokenizer)."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    model, tokenizer, quantized = load_base(base_path, config.quantization)
    columns = preference_examples(rows, tokenizer, config)
    n = len(columns["prompt"])
    if n < 1:
        raise NoTrainingData("generator: no usable preference pairs")
    peft_config = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
    )
    with tempfile.TemporaryDirectory(prefix="aitl-generator-") as tmp:
        args = ORPOConfig(
            **common_args(
                output_dir=tmp,
                epochs=config.epochs,
                max_steps=config.max_steps,
                batch_size=config.batch_size,
                learning_rate=config.learning_rate,
                seed=config.seed,
                progress=progress,
            ),
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            beta=config.beta,
            max_length=config.max_length,
            max_completion_length=config.max_completion_length,
            remove_unused_columns=False,
            bf16=quantized,
            activation_checkpointing=quantized,
        )
        trainer = ORPOTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_dict(columns),
            processing_class=tokenizer,
            peft_config=peft_config,
        )
        quiet(trainer, progress).train()
    steps, seconds, losses = trainer_outcome(trainer, config.batch_size)
    adapter: Any = trainer.model
    adapter.save_pretrained(str(out_dir / ADAPTER_DIR))
    tokenizer.save_pretrained(str(out_dir / ADAPTER_DIR))  # serving loads it from here
    tokenizer.save_pretrained(str(out_dir))
    return TrainResult(
        base_model=base_path,
        examples=steps * config.batch_size * config.gradient_accumulation_steps,
        steps=steps,
        seconds=seconds,
        loss_history=losses,
        extra={"train_pairs": n, "quantized_4bit": quantized, "rows": len(rows)},
    )


# --- evaluation -----------------------------------------------------------------------
class AdapterModel:
    """One base model with named LoRA adapters; ``None`` selects the bare base."""

    def __init__(self, base_path: str, quantization: str = "auto") -> None:
        self.model, self.tokenizer, _ = load_base(base_path, quantization)
        self.tokenizer.padding_side = "left"
        self._peft: Any = None

    def add(self, name: str, adapter_dir: Path) -> None:
        from peft import PeftModel

        if self._peft is None:
            self._peft = PeftModel.from_pretrained(self.model, str(adapter_dir), adapter_name=name)
        else:
            self._peft.load_adapter(str(adapter_dir), adapter_name=name)
        self._peft.eval()

    @contextmanager
    def use(self, name: str | None) -> Iterator[Any]:
        if self._peft is None:
            if name is not None:
                raise KeyError(f"no adapter {name!r} loaded")
            yield self.model.eval()
        elif name is None:
            with self._peft.disable_adapter():
                yield self._peft
        else:
            self._peft.set_adapter(name)
            yield self._peft


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    use_chat_template: bool,
    progress: bool = False,
) -> list[str]:
    """Greedy replies, batched with left padding."""
    import torch
    from tqdm.auto import tqdm

    out: list[str] = []
    batches = range(0, len(prompts), batch_size)
    for i in tqdm(batches, desc="generating", disable=not progress):
        texts = [
            render_prompt(tokenizer, p, use_chat_template) for p in prompts[i : i + batch_size]
        ]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        with torch.no_grad():
            ids = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = ids[:, enc["input_ids"].shape[1] :]
        out.extend(t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True))
    return out


def completion_logprob(model: Any, tokenizer: Any, prompt: str, completion: str) -> float:
    """Mean log-probability per token of ``completion`` after ``prompt``."""
    import torch

    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full = tokenizer(prompt + completion, add_special_tokens=False)["input_ids"]
    c_len = len(full) - len(p_ids)
    if c_len <= 0:
        return 0.0
    ids = torch.tensor([full], device=model.device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1].float()
    logp = torch.log_softmax(logits, dim=-1)
    targets = ids[0, 1:]
    token_lp = logp[torch.arange(len(targets)), targets][-c_len:]
    return float(token_lp.mean())


def preference_margin(
    model: Any, tokenizer: Any, rows: Sequence[GeneratorRow], use_chat_template: bool
) -> dict[str, float]:
    """ORPO's own yardstick on held-out pairs: mean log-odds margin and accuracy."""
    margins = []
    for r in rows:
        prompt = render_prompt(tokenizer, r["prompt"], use_chat_template)
        lc = completion_logprob(model, tokenizer, prompt, r["chosen"])
        lr = completion_logprob(model, tokenizer, prompt, r["rejected"])
        margins.append(_log_odds(lc) - _log_odds(lr))
    if not margins:
        return {}
    return {
        "pair_log_odds_margin": sum(margins) / len(margins),
        "pair_accuracy": sum(m > 0 for m in margins) / len(margins),
    }


def _log_odds(mean_logp: float) -> float:
    mean_logp = min(mean_logp, -1e-6)
    return mean_logp - math.log1p(-math.exp(mean_logp))


def evaluate_generator(
    models: AdapterModel,
    candidate: str,
    serving: str | None,
    rows: Sequence[GeneratorRow],
    judge: PairwiseJudge,
    similarity: ReferenceSimilarityJudge,
    config: GeneratorConfig,
    *,
    progress: bool = False,
) -> tuple[dict[str, float], dict[str, float]]:
    """(candidate metrics, serving metrics) on up to ``config.eval_examples`` eval rows.

    ``candidate``/``serving`` name adapters in ``models`` (serving ``None`` = the bare
    base, i.e. the stock generator). The references are the agents' chosen replies.
    """
    rows = [r for r in rows if r["prompt"] and r["chosen"]][: config.eval_examples]
    if not rows:
        return {}, {}
    prompts = [r["prompt"] for r in rows]
    refs = [r["chosen"] for r in rows]
    replies: dict[str | None, list[str]] = {}
    metrics: dict[str | None, dict[str, float]] = {}
    for name in (candidate, serving):
        with models.use(name) as model:
            replies[name] = generate(
                model,
                models.tokenizer,
                prompts,
                max_new_tokens=config.max_new_tokens,
                batch_size=config.eval_batch_size,
                use_chat_template=config.use_chat_template,
                progress=progress,
            )
            metrics[name] = preference_margin(
                model, models.tokenizer, rows, config.use_chat_template
            )
        sims = [similarity.similarity(t, ref) for t, ref in zip(replies[name], refs, strict=True)]
        metrics[name]["reply_similarity"] = sum(sims) / len(sims)
    pairs = [
        JudgedPair(p, c, s, ref)
        for p, c, s, ref in zip(prompts, replies[candidate], replies[serving], refs, strict=True)
    ]
    scores = judge_pairs(judge, pairs)
    cand = metrics[candidate] | {"win_rate": win_rate(scores), "judged_pairs": float(len(scores))}
    base = metrics[serving] | {"win_rate": 0.5}
    return cand, base
