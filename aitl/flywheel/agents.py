"""Simulated support agents: they see a real suggestion and annotate it like people do.

An agent knows the case's gold knowledge and the human reference reply (that is what a
real agent knows from experience and from looking things up). Its profile decides how
faithfully it annotates:

* ``careful``: prefers the candidate closer to the reference; labels shown knowledge
  relevant exactly when it is gold; reports gold knowledge that was not shown; sends the
  best candidate as-is / edited, or rejects both, by its similarity to the reference.
* ``careless``: random preference, random relevance labels, boilerplate rationale, random
  missing-knowledge picks: the noise the Virtual Judge exists to catch.
* ``fatigued``: careful at the start of a shift, then ever more often careless, with
  long runs of the default choice (A); quality decays with the annotation count.
* ``deferred``: careful, but records missing knowledge hours later, from memory, with
  more mistakes (the paper measured 76.5% vs 63.9% agreement, immediate vs deferred).

Everything is seeded: the same cases and seed give the same annotations.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from kernel import events as ev
from kernel.text import tokens

Profile = Literal["careful", "careless", "fatigued", "deferred"]
PROFILES: tuple[Profile, ...] = ("careful", "careless", "fatigued", "deferred")

AS_IS_THRESHOLD = 0.55  # token-F1 to the reference at or above which a reply is sent as-is
EDIT_THRESHOLD = 0.25  # at or above: lightly edited; below: both candidates rejected
IMMEDIATE_ERROR = 0.235  # chance a missing-knowledge item is wrong (1 - 0.765 agreement)
DEFERRED_ERROR = 0.361  # (1 - 0.639)


def token_f1(a: str, b: str) -> float:
    """Bag-of-words F1 between two texts (SQuAD-style), 0..1."""
    ta, tb = tokens(a), tokens(b)
    if not ta or not tb:
        return 0.0
    common: dict[str, int] = {}
    counts: dict[str, int] = {}
    for t in tb:
        counts[t] = counts.get(t, 0) + 1
    overlap = 0
    for t in ta:
        if counts.get(t, 0) > common.get(t, 0):
            common[t] = common.get(t, 0) + 1
            overlap += 1
    if overlap == 0:
        return 0.0
    p, r = overlap / len(ta), overlap / len(tb)
    return 2 * p * r / (p + r)


@dataclass(frozen=True)
class CaseTruth:
    """What the simulated agent knows about a case."""

    case_id: str
    gold_ids: tuple[str, ...]
    reference: str


@dataclass(frozen=True)
class _Verdict:
    """What an agent decided about one suggestion, before it is written as events."""

    preferred: ev.Preference
    labels: list[ev.RelevanceLabel]
    decision: ev.Adoption
    rationale: str
    category: ev.RationaleCategory


def _careful_verdict(sims: dict[str, float], shown: list[str], gold: set[str]) -> _Verdict:
    """The faithful annotation: prefer the reply closer to the reference, label exactly the
    gold knowledge relevant, and send / edit / reject by the best reply's similarity."""
    preferred = ev.Preference.A if sims["A"] >= sims["B"] else ev.Preference.B
    if abs(sims["A"] - sims["B"]) < 0.01:
        preferred = ev.Preference.TIE
    labels = [
        ev.RelevanceLabel(
            knowledge_id=k,
            label=ev.Relevance.RELEVANT if k in gold else ev.Relevance.IRRELEVANT,
        )
        for k in shown
    ]
    best = max(sims.values())
    if best >= AS_IS_THRESHOLD:
        decision, category = ev.Adoption.AS_IS, ev.RationaleCategory.ACCURATE
        rationale = "Accurate and complete; sent as suggested."
    elif best >= EDIT_THRESHOLD:
        decision, category = ev.Adoption.EDITED, ev.RationaleCategory.INCOMPLETE
        rationale = "Right direction but missing details from the policy; completed it."
    else:
        decision, category = ev.Adoption.REJECTED, ev.RationaleCategory.INACCURATE
        rationale = "Neither reply answers the question; wrote my own from the knowledge base."
    return _Verdict(preferred, labels, decision, rationale, category)


def _verdict_events(
    verdict: _Verdict,
    cands: dict[str, ev.Candidate],
    reference: str,
    at: datetime,
    common: dict[str, str],
) -> list[ev.Event]:
    """The preference, adoption and (if knowledge was shown) relevance events of a verdict,
    a second apart so they arrive in the order an agent clicks them."""

    def envelope(offset: float = 0.0) -> ev.Envelope:
        return ev.Envelope(event_time=at + timedelta(seconds=offset), producer="aitl-simulator")

    best_id = "A" if verdict.preferred is not ev.Preference.B else "B"
    sent = cands[best_id].text if verdict.decision is ev.Adoption.AS_IS else reference
    out: list[ev.Event] = [
        ev.PairwisePreference(envelope=envelope(), preferred=verdict.preferred, **common),
        ev.AdoptionDecision(
            envelope=envelope(1),
            decision=verdict.decision,
            candidate_id=None if verdict.decision is ev.Adoption.REJECTED else best_id,
            final_text=sent,
            rationale_text=verdict.rationale,
            rationale_category=verdict.category,
            **common,
        ),
    ]
    if verdict.labels:
        out.append(ev.KnowledgeRelevance(envelope=envelope(2), labels=verdict.labels, **common))
    return out


@dataclass
class Agent:
    agent_id: str
    profile: Profile
    seed: int = 0
    fatigue_half_life: int = 40  # annotations after which a fatigued agent is 50% careless
    annotations: int = 0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.agent_id}:{self.seed}")

    def _careless_now(self) -> bool:
        if self.profile == "careless":
            return True
        if self.profile == "fatigued":
            p = 1 - 0.5 ** (self.annotations / self.fatigue_half_life)
            return bool(self.rng.random() < p)
        return False

    def annotate(
        self, truth: CaseTruth, suggestion: ev.SuggestionServed, served_at: datetime
    ) -> list[ev.Event]:
        """The four annotations of one suggestion (missing knowledge only when some is)."""
        careless = self._careless_now()
        self.annotations += 1
        at = served_at + timedelta(seconds=self.rng.random())
        cands = {c.candidate_id: c for c in suggestion.candidates}
        sims = {cid: token_f1(c.text, truth.reference) for cid, c in cands.items()}
        common = {
            "request_id": suggestion.request_id,
            "case_id": truth.case_id,
            "agent_id": self.agent_id,
        }
        shown = [k.knowledge_id for k in suggestion.ranked]
        if careless:
            verdict = self._careless_verdict(shown)
        else:
            verdict = _careful_verdict(sims, shown, set(truth.gold_ids))
        out = _verdict_events(verdict, cands, truth.reference, at, common)
        missing = self._missing(truth, suggestion, shown, careless)
        if missing:
            out.append(self._missing_event(missing, at, common))
        return out

    def _careless_verdict(self, shown: list[str]) -> _Verdict:
        """Random preference, labels and decision (a fatigued agent defaults to A, as-is):
        the noise the Virtual Judge must catch; draws the rng in the seeded order."""
        default_run = self.profile == "fatigued"
        preferred = ev.Preference.A if default_run else self.rng.choice(list(ev.Preference))
        labels = [
            ev.RelevanceLabel(knowledge_id=k, label=self.rng.choice(list(ev.Relevance)))
            for k in shown
        ]
        decision = ev.Adoption.AS_IS if default_run else self.rng.choice(list(ev.Adoption))
        return _Verdict(preferred, labels, decision, "ok", ev.RationaleCategory.OTHER)

    def _missing_event(
        self, missing: list[str], at: datetime, common: dict[str, str]
    ) -> ev.MissingKnowledge:
        """The missing-knowledge annotation: seconds after the look-up, or hours later from
        memory for a deferred agent (the paper's immediate vs deferred timing)."""
        deferred = self.profile == "deferred"
        looked = at - timedelta(seconds=10)
        noted = at + (
            timedelta(hours=3 + self.rng.random() * 5) if deferred else timedelta(seconds=3)
        )
        return ev.MissingKnowledge(
            envelope=ev.Envelope(event_time=noted, producer="aitl-simulator"),
            items=[ev.MissingItem(knowledge_id=k) for k in missing],
            timing=ev.AnnotationTiming.DEFERRED if deferred else ev.AnnotationTiming.IMMEDIATE,
            looked_up_at=looked,
            annotated_at=noted,
            **common,
        )

    def _missing(
        self, truth: CaseTruth, suggestion: ev.SuggestionServed, shown: list[str], careless: bool
    ) -> list[str]:
        """Gold knowledge the agent had to find elsewhere, with profile-dependent mistakes."""
        retrieved = [k.knowledge_id for k in suggestion.retrieved]
        if careless:
            pool = retrieved or list(truth.gold_ids)
            return self.rng.sample(pool, k=min(len(pool), self.rng.randint(0, 2)))
        missing = [g for g in truth.gold_ids if g not in shown]
        error = DEFERRED_ERROR if self.profile == "deferred" else IMMEDIATE_ERROR
        wrong_pool = [k for k in retrieved if k not in truth.gold_ids] or retrieved
        out = []
        for g in missing:
            if self.rng.random() < error and wrong_pool:
                out.append(self.rng.choice(wrong_pool))  # misremembered: a non-gold object
            else:
                out.append(g)
        return list(dict.fromkeys(out))


def make_agents(n: int, mix: dict[Profile, float], seed: int = 0) -> list[Agent]:
    """``n`` agents whose profiles follow ``mix`` (shares summing to 1)."""
    rng = random.Random(seed)
    profiles: list[Profile] = []
    for profile, share in mix.items():
        profiles.extend([profile] * round(share * n))
    while len(profiles) < n:
        profiles.append("careful")
    rng.shuffle(profiles)
    return [Agent(f"agent-{i:03d}", p, seed) for i, p in enumerate(profiles[:n])]
