"""LLMJudge: asks an OpenAI-compatible chat endpoint (vLLM, Ollama, a hosted API), or a
local transformers model (:class:`LocalChat`), for prompt-adherence and consistency scores
as strict JSON.

Every call is bounded: ``timeout_s`` per attempt, ``retries`` more attempts on transport
errors, timeouts, 429 and 5xx. When the endpoint is down or answers garbage, the verdict
is the fallback :class:`RuleJudge`'s, with an ``llm_fallback:<why>`` reason, and the
judge stays on the fallback for ``cooldown_s`` so a dead endpoint never stalls the stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kernel.errors import ModelError
from kernel.reasons import Reason
from processors import metrics
from processors.judge.base import JudgeInput, Verdict, decide
from processors.judge.rules import RuleJudge

log = logging.getLogger(__name__)

PROMPT_VERSION = "llm-judge-v1"
SYSTEM_PROMPT = """You audit annotations that customer-support agents gave to an AI assistant's \
suggested replies. Judge whether the annotation is consistent with the evidence (the \
suggestion, the knowledge shown, the reply the agent actually sent) and whether the \
annotated reply adheres to the customer's request and the knowledge.
Answer with ONE JSON object and nothing else:
{"prompt_adherence": <number 0..1>, "consistency": <number 0..1>, "accept": <true|false>, \
"reasons": [<short snake_case strings>]}"""


class LLMAnswer(BaseModel):
    """The only answer shape accepted: anything else is malformed."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt_adherence: float = Field(ge=0.0, le=1.0)
    consistency: float = Field(ge=0.0, le=1.0)
    accept: bool
    reasons: list[str] = Field(default_factory=list, max_length=10)


class MalformedAnswer(ModelError, ValueError):
    """The endpoint answered, but not with the JSON the prompt asks for."""


def render(inp: JudgeInput) -> str:
    """The user message: the annotation and its evidence, as compact JSON."""
    sugg = inp.suggestion
    body: dict[str, Any] = {
        "annotation_type": inp.type,
        "annotation": inp.annotation.model_dump(
            mode="json", exclude={"envelope", "agent_id", "case_id", "request_id"}
        ),
        "customer_message": inp.customer_message,
        "query": sugg.query,
        "candidates": {c.candidate_id: c.text for c in sugg.candidates},
        "knowledge_shown": {
            k.knowledge_id: inp.knowledge.get(k.knowledge_id, "(unavailable)")[:600]
            for k in sugg.ranked
        },
        "sent_reply": inp.adoption.final_text if inp.adoption else None,
    }
    return json.dumps(body, ensure_ascii=False)


def parse_answer(content: str) -> LLMAnswer:
    """Strict: one JSON object (a single ```json fence around it is tolerated)."""
    text = content.strip()
    if text.startswith("```"):
        text = text.removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedAnswer(f"not JSON: {exc.msg}") from exc
    if not isinstance(raw, dict):
        raise MalformedAnswer("not a JSON object")
    for key in ("prompt_adherence", "consistency"):  # 1 is a fine score; True is not
        if type(raw.get(key)) is int:
            raw[key] = float(raw[key])
    try:
        return LLMAnswer.model_validate(raw)
    except ValidationError as exc:
        raise MalformedAnswer(f"wrong shape: {exc.errors()[0]['msg']}") from exc


def chat_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    return base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")


PREFILL = '{"prompt_adherence": '


def first_object(text: str) -> str:
    """The first JSON value of ``text`` (a local model keeps talking after it), or
    ``text`` itself when there is none, for the strict parser to refuse."""
    try:
        _, end = json.JSONDecoder().raw_decode(text)
    except ValueError:
        return text
    return text[:end]


class LocalChat:
    """A transformers causal LM in this process, answering chat messages greedily.

    Loaded on first use (in a thread); one generation at a time. A model that cannot
    load or generate raises ``OSError``, which the judge treats like an endpoint that is
    down. ``model`` is a name :func:`kernel.models.resolve_generator` knows or a local path.
    """

    def __init__(self, model: str, max_new_tokens: int = 96) -> None:
        self.model_name = model
        self.max_new_tokens = max_new_tokens
        self._loaded: tuple[Any, Any] | None = None
        self._lock = asyncio.Lock()

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            try:
                from transformers import AutoModelForCausalLM, AutoTokenizer

                from kernel.models import resolve_generator

                path = resolve_generator(self.model_name)
                tokenizer = AutoTokenizer.from_pretrained(path)
                model = AutoModelForCausalLM.from_pretrained(path).eval()
            except Exception as exc:  # missing files, bad config: "unavailable"
                raise OSError(f"local judge model {self.model_name!r}: {exc}") from exc
            self._loaded = (tokenizer, model)
        return self._loaded

    def _generate(self, messages: list[dict[str, str]]) -> str:
        """The answer, started with :data:`PREFILL` (small models then keep to the JSON
        shape far more often; the strict parser still has the last word)."""
        import torch

        tokenizer, model = self._load()
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = tokenizer(text + PREFILL, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(
                **ids,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            )
        new = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        return first_object(PREFILL + str(new))

    async def complete(self, messages: list[dict[str, str]], timeout_s: float) -> str:
        """The model's answer; ``TimeoutError`` past ``timeout_s`` (the generation in
        flight finishes in its thread, the next call waits for it)."""
        async with self._lock:
            return await asyncio.wait_for(asyncio.to_thread(self._generate, messages), timeout_s)


@dataclass
class LLMJudge:
    """Judges through an OpenAI-compatible ``/v1/chat/completions`` endpoint, or with a
    local model when ``base_url`` is ``local``."""

    base_url: str
    model: str = "judge"
    api_key: str | None = None
    timeout_s: float = 10.0
    retries: int = 2
    backoff_s: float = 0.2
    cooldown_s: float = 30.0
    max_concurrency: int = 8
    fallback: RuleJudge = field(default_factory=RuleJudge)
    name: str = "llm"
    version: str = PROMPT_VERSION
    remote: bool = True
    _down_until: float = field(default=0.0, init=False)
    _client: httpx.AsyncClient | None = field(default=None, init=False)
    _local: LocalChat | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.base_url == "local":
            self._local = LocalChat(self.model)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.AsyncClient(timeout=self.timeout_s, headers=headers)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def ask(self, inp: JudgeInput) -> LLMAnswer:
        """One judgement from the endpoint, with retries; raises on failure."""
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": render(inp)},
        ]
        if self._local is not None:
            try:
                content = await self._local.complete(messages, self.timeout_s)
            except TimeoutError as exc:
                raise httpx.TimeoutException("local judge model timed out") from exc
            return parse_answer(content)
        payload = {
            "model": self.model,
            "temperature": 0,
            "max_tokens": 200,
            "response_format": {"type": "json_object"},
            "messages": messages,
        }
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                resp = await self._http().post(chat_url(self.base_url), json=payload)
            except httpx.HTTPError as exc:  # connect errors, timeouts
                last = exc
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                last = httpx.HTTPStatusError(
                    f"HTTP {resp.status_code}", request=resp.request, response=resp
                )
                continue
            if resp.status_code != 200:
                raise MalformedAnswer(f"HTTP {resp.status_code}")
            try:
                content = resp.json()["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise MalformedAnswer("no choices[0].message.content") from exc
            if not isinstance(content, str):
                raise MalformedAnswer("content is not a string")
            return parse_answer(content)
        assert last is not None
        raise last

    async def judge_one(self, inp: JudgeInput, fallback: Verdict) -> Verdict:
        """The LLM's verdict, or ``fallback`` with the reason the LLM was not used."""
        if time.monotonic() < self._down_until:
            metrics.LLM_REQUESTS.labels(outcome="circuit_open").inc()
            return fallback.with_reasons(Reason.LLM_FALLBACK("circuit_open"))
        try:
            answer = await self.ask(inp)
        except MalformedAnswer as exc:
            metrics.LLM_REQUESTS.labels(outcome="malformed").inc()
            log.warning("LLM judge answered malformed JSON: %s", exc)
            return fallback.with_reasons(Reason.LLM_FALLBACK(f"malformed ({exc})"))
        except (httpx.HTTPError, OSError) as exc:
            kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "unavailable"
            metrics.LLM_REQUESTS.labels(outcome=kind).inc()
            self._down_until = time.monotonic() + self.cooldown_s
            log.warning("LLM judge %s (%r); rule verdicts for %.0fs", kind, exc, self.cooldown_s)
            return fallback.with_reasons(Reason.LLM_FALLBACK(kind))
        metrics.LLM_REQUESTS.labels(outcome="ok").inc()
        reasons = [Reason.LLM(r) for r in answer.reasons]
        if not answer.accept:
            reasons.append(Reason.LLM_REJECTED())
        scores = {"prompt_adherence": answer.prompt_adherence, "consistency": answer.consistency}
        return decide(self.name, self.version, reasons, 1.0, scores)

    async def judge_many(self, inputs: Sequence[JudgeInput]) -> list[Verdict]:
        fallbacks = await self.fallback.judge_many(inputs)
        sem = asyncio.Semaphore(self.max_concurrency)

        async def one(inp: JudgeInput, fallback: Verdict) -> Verdict:
            async with sem:
                return await self.judge_one(inp, fallback)

        pairs = zip(inputs, fallbacks, strict=True)
        return list(await asyncio.gather(*(one(i, f) for i, f in pairs)))
