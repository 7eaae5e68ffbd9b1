"""RuleJudge: the default Virtual Judge. Fast, deterministic, explainable.

Each rule is a plain function of a :class:`JudgeInput` adding reason codes to a
:class:`RuleOutcome`; the judge runs them all, multiplies the weights and rejects on any
rejecting reason (see :mod:`kernel.reasons`). The rules of each annotation type live with
the type (``kernel/annotations/<type>.py``); thresholds are fields of :class:`RuleConfig`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kernel.annotations import JudgeInput, Rule, RuleConfig, RuleOutcome
from kernel.reasons import Reason, rejects
from processors.judge.agreement import AgreementTracker
from processors.judge.base import Verdict, decide
from processors.judge.fatigue import FatigueTracker
from processors.judge.reliability import ReliabilityTracker

# rule-2: missing knowledge vs what was shown; rule-3: agent record; rule-4: agreement with
# the other agents and behaviour vs the population; all-relevant labels the reply ignores
RULE_JUDGE_VERSION = "rule-4"


def rule_integrity(inp: JudgeInput, cfg: RuleConfig, out: RuleOutcome) -> None:
    """The annotation can become an example and belongs to its own suggestion."""
    ann = inp.annotation
    if ann.case_id != inp.suggestion.case_id:
        out.reasons.append(Reason.CASE_MISMATCH(inp.suggestion.case_id))
    ann.check_integrity(inp, out)


def rule_type(inp: JudgeInput, cfg: RuleConfig, out: RuleOutcome) -> None:
    """The annotation type's own rules (its module's ``judge``)."""
    inp.annotation.judge(inp, cfg, out)


RULES: tuple[Rule, ...] = (rule_integrity, rule_type)


@dataclass
class RuleJudge:
    """Runs every rule; then the agent's standing: fatigue lowers the weight, a record of
    rejections (``reliability``) lowers it or rejects, and agreement with the other agents
    (``agreement``: estimated accuracy, habits vs the population) multiplies it by the
    agent's reliability or rejects. ``None`` switches a tracker off. All three keep their
    state in this worker's memory and start from nothing on a restart."""

    config: RuleConfig = field(default_factory=RuleConfig)
    fatigue: FatigueTracker | None = field(default_factory=FatigueTracker)
    reliability: ReliabilityTracker | None = field(default_factory=ReliabilityTracker)
    agreement: AgreementTracker | None = field(default_factory=AgreementTracker)
    rules: tuple[Rule, ...] = RULES
    name: str = "rule"
    version: str = RULE_JUDGE_VERSION
    remote: bool = False

    def evaluate(self, inp: JudgeInput) -> Verdict:
        out = RuleOutcome()
        for rule in self.rules:
            rule(inp, self.config, out)
        rejected = any(rejects(r) for r in out.reasons)
        if self.agreement is not None:
            # what the rules rejected neither joins the consensus nor shapes the habits
            signal = self.agreement.observe(inp, learn=not rejected)
            out.weight *= signal.weight
            out.reasons.extend(signal.reasons)
            out.scores.update(signal.scores)
        if self.reliability is not None:
            standing = self.reliability.observe(inp.agent, rejected)
            out.weight *= standing.weight
            out.reasons.extend(standing.reasons)
            out.scores["agent_reject_rate"] = round(standing.reject_rate, 4)
        if self.fatigue is not None:
            ann = inp.annotation
            tired = self.fatigue.observe(inp.agent, ann.default_choice(), ann.envelope.event_time)
            out.weight *= tired.weight
            out.reasons.extend(tired.reasons)
            out.scores["default_rate"] = round(tired.default_rate, 4)
        out.reasons.extend(inp.notes)
        return decide(self.name, self.version, out.reasons, out.weight, out.scores)

    async def judge_many(self, inputs: Sequence[JudgeInput]) -> list[Verdict]:
        return [self.evaluate(inp) for inp in inputs]


INTEGRITY_RULES: tuple[Rule, ...] = (rule_integrity,)


def IntegrityJudge() -> RuleJudge:  # noqa: N802 (stands where a judge class is named)
    """No Virtual Judge (the paper's ablation, ``AITL_PROCESSORS_JUDGE=none``).

    Only checks that an annotation can become an example at all (fields present, it
    refers to its own suggestion's candidates and knowledge); everything else, careless
    or tired, is accepted at full weight.
    """
    return RuleJudge(
        fatigue=None,
        reliability=None,
        agreement=None,
        rules=INTEGRITY_RULES,
        name="none",
        version="integrity-1",
    )
