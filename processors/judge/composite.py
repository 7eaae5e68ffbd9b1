"""CompositeJudge: the rules first, the LLM only for what the rules accept.

An annotation is accepted when both accept. The rules' weight (fatigue, deferral) is
kept; reasons and scores of both are recorded. When the LLM is down, the LLM judge hands
back the rule verdict with an ``llm_fallback`` reason, so the stream keeps moving.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from processors.judge.base import JudgeInput, Verdict, decide
from processors.judge.llm import LLMJudge
from processors.judge.rules import RuleJudge


@dataclass
class CompositeJudge:
    llm: LLMJudge
    rule: RuleJudge = field(default_factory=RuleJudge)
    name: str = "composite"
    remote: bool = True

    @property
    def version(self) -> str:
        return f"{self.rule.version}+{self.llm.version}"

    def _combine(self, rule: Verdict, llm: Verdict) -> Verdict:
        if llm is rule or llm.judge_name == rule.judge_name:  # the LLM fell back to the rules
            reasons = list(llm.reasons)
        else:
            reasons = [*rule.reasons, *llm.reasons]
        scores = {**rule.scores, **{f"llm_{k}": v for k, v in llm.scores.items()}}
        return decide(self.name, self.version, reasons, rule.weight, scores)

    async def judge_many(self, inputs: Sequence[JudgeInput]) -> list[Verdict]:
        rules = await self.rule.judge_many(inputs)
        sem = asyncio.Semaphore(self.llm.max_concurrency)

        async def one(inp: JudgeInput, rule: Verdict) -> Verdict:
            if not rule.accepted:
                return decide(self.name, self.version, rule.reasons, rule.weight, rule.scores)
            async with sem:
                llm = await self.llm.judge_one(inp, rule)
            return self._combine(rule, llm)

        return list(await asyncio.gather(*(one(i, r) for i, r in zip(inputs, rules, strict=True))))
