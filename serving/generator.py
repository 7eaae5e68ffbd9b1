"""The generator: two candidate replies (A and B) grounded on the top knowledge.

Any Hugging Face causal LM with a chat template works (``Settings.generator_model``: the
packaged SmolLM2-135M-Instruct by default; a Mistral-class model on a GPU box). A promoted
checkpoint is a ``causal-lm`` directory, or a LoRA ``adapter/`` on its ``base_model``.

Decoding is CPU-cheap: A and B are the same greedy pass over two prompt styles, batched
(``variant_b="prompt"``); ``variant_b="sample"`` instead samples B from A's prompt at
``temperature`` (one more pass); ``variant_b="extractive"`` makes B the top knowledge
object's own answer, cited, with no decoding at all (half the CPU of a suggestion: the
cost is in the prompt's prefill).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kernel.checkpoints import ModelSpec, load_card
from kernel.errors import ModelError
from kernel.models import resolve_generator, torch_device
from kernel.prompt import Snippet, build_messages, extractive_answer, ground

GENERATOR_KIND = "causal-lm"

GenerationRequest = tuple[str, Sequence[tuple[str, str]], Sequence[Snippet]]


@dataclass(frozen=True)
class Reply:
    """One candidate reply with the knowledge ids it cites."""

    candidate_id: str
    text: str
    cited_knowledge_ids: list[str]


@dataclass(frozen=True)
class Generation:
    """Both candidates and what producing them cost (``seconds`` is the whole batch's)."""

    replies: list[Reply]
    new_tokens: int
    seconds: float


class Generator:
    """A loaded causal LM producing the two candidates."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        version: str,
        *,
        max_new_tokens: int = 48,
        n_knowledge: int = 3,
        snippet_chars: int = 300,
        variant_b: Literal["prompt", "sample", "extractive"] = "prompt",
        temperature: float = 0.8,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.version = version
        self.max_new_tokens = max_new_tokens
        self.n_knowledge = n_knowledge
        self.snippet_chars = snippet_chars
        self.variant_b = variant_b
        self.temperature = temperature
        self.seed = seed

    def prompt_texts(self, messages: Sequence[list[dict[str, str]]]) -> list[str]:
        """Chat-template each message list, ending at the assistant's turn."""
        return [
            self.tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
            for m in messages
        ]

    def complete(self, prompts: Sequence[str], *, sample: bool = False) -> tuple[list[str], int]:
        """Decode each prompt (batched, left-padded); returns texts and new-token count."""
        import torch

        batch = self.tokenizer(
            list(prompts), return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.model.device)
        options: dict[str, Any] = {"do_sample": False}
        if sample:
            torch.manual_seed(self.seed)
            options = {"do_sample": True, "temperature": self.temperature, "top_p": 0.95}
        with torch.inference_mode():
            out = self.model.generate(
                **batch,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
                **options,
            )
        new = out[:, batch["input_ids"].shape[1] :]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        new_tokens = int((new != self.tokenizer.pad_token_id).sum())
        return [t.strip() for t in texts], new_tokens

    def generate(
        self, query: str, history: Sequence[tuple[str, str]], knowledge: Sequence[Snippet]
    ) -> Generation:
        """Candidates A and B for the customer's ``query`` given the ranked knowledge."""
        return self.generate_many([(query, history, knowledge)])[0]

    def generate_many(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Candidates for several requests in one batched decode (cheaper per request on
        CPU and GPU alike: decoding is memory-bound)."""
        started = time.perf_counter()
        shown = [list(knowledge[: self.n_knowledge]) for _, _, knowledge in requests]
        pairs = list(zip(requests, shown, strict=True))
        chars = self.snippet_chars
        msgs_a = [build_messages(q, h, s, "A", max_chars=chars) for (q, h, _), s in pairs]
        if self.variant_b == "prompt":
            msgs_b = [build_messages(q, h, s, "B", max_chars=chars) for (q, h, _), s in pairs]
            texts, tokens = self.complete(self.prompt_texts([*msgs_a, *msgs_b]))
            texts_a, texts_b = texts[: len(requests)], texts[len(requests) :]
        elif self.variant_b == "extractive":
            texts_a, tokens = self.complete(self.prompt_texts(msgs_a))
            texts_b = [f"{extractive_answer(s[0].text, chars)} [1]" if s else "" for s in shown]
        else:
            prompts = self.prompt_texts(msgs_a)
            texts_a, tokens_a = self.complete(prompts)
            texts_b, tokens_b = self.complete(prompts, sample=True)
            tokens = tokens_a + tokens_b
        seconds = time.perf_counter() - started
        out = []
        for text_a, text_b, snippets in zip(texts_a, texts_b, shown, strict=True):
            replies = []
            for cid, text in (("A", text_a), ("B", text_b)):
                grounded, cited = ground(text, snippets)
                replies.append(Reply(cid, grounded, cited))
            out.append(Generation(replies, tokens // len(requests), seconds))
        return out


def load_generator(spec: ModelSpec, stock_model: str, **options: Any) -> Generator:
    """The generator of ``spec``: the stock model, a ``causal-lm`` checkpoint or a LoRA
    adapter on the checkpoint's ``base_model``. ``options`` go to :class:`Generator`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter: str | None = None
    if spec.is_stock:
        source = resolve_generator(stock_model)
    else:
        directory, card = load_card(spec.artifact_uri, "generator", spec.sha256)
        kind = card.get("kind", GENERATOR_KIND)
        if kind != GENERATOR_KIND:
            raise ModelError(f"generator checkpoint kind {kind!r} is not {GENERATOR_KIND!r}")
        source = str(directory)
        if card.get("adapter"):
            adapter = str(directory / "adapter")
            source = resolve_generator(str(card.get("base_model") or stock_model))
    cpu_dtype = options.pop("cpu_dtype", "float32")
    device = torch_device()
    dtype = torch.bfloat16 if device == "cuda" else _cpu_dtype(cpu_dtype)
    tokenizer = AutoTokenizer.from_pretrained(adapter or source)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model = model.to(device).eval()
    return Generator(model, tokenizer, spec.version, **options)


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AMX or AVX512-BF16)."""
    try:
        flags = open("/proc/cpuinfo").read().split()  # noqa: SIM115 (read once)
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _cpu_dtype(name: str) -> Any:
    import torch

    if name == "auto":
        name = "bfloat16" if cpu_has_bf16() else "float32"
    return torch.bfloat16 if name == "bfloat16" else torch.float32
