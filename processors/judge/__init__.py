"""The Virtual Judge: decides which agent annotations become training data, and how much
they weigh. ``RuleJudge`` is the default; ``LLMJudge`` and ``CompositeJudge`` add an
OpenAI-compatible model with a rule fallback; ``IntegrityJudge`` is the no-judge ablation."""

from kernel.annotations import RuleConfig
from processors.judge.base import REJECTING, Judge, JudgeInput, Verdict, reason_code
from processors.judge.composite import CompositeJudge
from processors.judge.fatigue import FatigueTracker
from processors.judge.llm import LLMJudge
from processors.judge.rules import IntegrityJudge, RuleJudge

__all__ = [
    "REJECTING",
    "CompositeJudge",
    "FatigueTracker",
    "IntegrityJudge",
    "Judge",
    "JudgeInput",
    "LLMJudge",
    "RuleConfig",
    "RuleJudge",
    "Verdict",
    "reason_code",
]
