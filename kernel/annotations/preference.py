"""Pairwise preference: which of the two candidate replies the agent preferred."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from kernel.annotations.adoption import Adoption
from kernel.annotations.base import Annotation, JudgeInput, ReplyPair, RuleConfig, RuleOutcome
from kernel.reasons import Reason
from kernel.text import cosine


class Preference(StrEnum):
    A = "A"
    B = "B"
    TIE = "TIE"


class PairwisePreference(Annotation):
    schema_name: ClassVar[str] = "PairwisePreference"
    event_type: ClassVar[str] = "preference"
    annotation_type: ClassVar[str] = "PREFERENCE"
    topic: ClassVar[str] = "annotations.preference"
    topic_doc: ClassVar[str] = "agent's preference between the two replies"
    waits_for_adoption: ClassVar[bool] = True

    preferred: Preference

    def default_choice(self) -> bool | None:
        return self.preferred is Preference.A

    def judge(self, inp: JudgeInput, cfg: RuleConfig, out: RuleOutcome) -> None:
        """Consistent with what was sent: the adopted candidate, or the candidate the
        sent text is closer to (by more than ``preference_margin``)."""
        if self.preferred is Preference.TIE:
            return
        if inp.adoption is None:
            out.reasons.append(Reason.ADOPTION_MISSING("preference not cross-checked"))
            return
        texts = {c.candidate_id: c.text for c in inp.suggestion.candidates}
        pref = self.preferred.value
        other = "B" if pref == "A" else "A"
        sent = inp.adoption.final_text
        sim_pref, sim_other = cosine(sent, texts[pref]), cosine(sent, texts[other])
        out.scores["consistency"] = round((1.0 + sim_pref - sim_other) / 2.0, 4)
        adopted = inp.adoption.candidate_id
        if inp.adoption.decision is not Adoption.REJECTED and adopted not in (None, pref):
            out.reasons.append(Reason.PREFERENCE_MISMATCH(f"preferred {pref}, sent {adopted}"))
        elif sim_other > sim_pref + cfg.preference_margin:
            out.reasons.append(
                Reason.PREFERENCE_MISMATCH(f"preferred {pref}, sent text closer to {other}")
            )

    def reply_pairs(self, inp: JudgeInput) -> list[ReplyPair]:
        if self.preferred is Preference.TIE:
            return []
        cands = {c.candidate_id: c.text for c in inp.suggestion.candidates}
        pref = self.preferred.value
        return [("generator", cands[pref], cands["B" if pref == "A" else "A"])]
