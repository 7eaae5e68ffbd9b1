"""Simulated support agents that see only what a real agent sees, through noisy perception.

A real agent annotating a suggestion sees the conversation, the two candidate replies,
the knowledge objects shown, and whatever it finds in the knowledge base's search box.
It knows, from experience, roughly what the answer must say and which facts it needs:
the simulator models that knowledge as the *latent* of a noisy channel, never as a
label to copy. Per annotation type:

* **relevance**: each shown object is labelled RELEVANT with probability
  ``sigmoid(bias + w_gold*is_gold + w_sim*cosine(object, conversation) + w_ent*same_entity)``:
  near-misses (about the right hotel, similar words, not needed) draw false positives,
  needed objects phrased differently from the conversation draw false negatives.
* **missing knowledge**: for each needed object not shown, the agent types what it
  remembers of the conversation into :class:`KnowledgeView.search` (immediately: the
  last turns with a few words lost; deferred, hours later: the question only, half its
  words, some mixed up), recognises the needed object among the results with some
  chance, and otherwise may settle for a near-miss from the results, or report nothing.
* **preference and adoption**: the agent reads each candidate as its token-F1 to what
  the answer must say plus Gaussian noise; it prefers the higher reading (a tie when
  close) and sends it as-is, edits it, or rejects both by that reading. An edit keeps
  the candidate and adds some of the sentences it lacks; a rejection is the agent's own
  partial reply; neither is ever the reference verbatim.
* **rationales** come from one pool (:data:`RATIONALES`) shared by every profile, so
  one careless annotation cannot be told from a careful one by its text.
* **careless modes**: rubber-stamping (A, as-is, everything relevant), random clicks,
  and copying the last case's labels. A ``careless`` agent always acts in one of them, a
  ``fatigued`` one ever more often over its shift; every annotation written so is in
  :attr:`Agent.corrupted` (the Virtual Judge's ground truth). A careful agent's
  perception noise is not corruption.

Calibrated (on dstc11-hotel, checked by ``tests/unit/test_agents.py``): the settle
rates, so that careful agents' missing-knowledge agreement with gold is the paper's
76.5% immediate / 63.9% deferred. *Agreement* here is item-level: the share of reported
missing-knowledge ids that are gold ids of the case (:func:`missing_agreement`).
Everything else in :class:`SimConfig` is a documented assumption. Everything is
seeded: the same cases, suggestions and seed give the same events (but event ids).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from aitl.flywheel.kbview import KnowledgeView
from aitl.flywheel.simconfig import PROFILES, CarelessMode, Profile, SimConfig
from kernel import events as ev
from kernel.text import containment, content_tokens, cosine, tokens

__all__ = [
    "PROFILES",
    "RATIONALES",
    "Agent",
    "CaseTruth",
    "KnowledgeView",
    "Profile",
    "SimConfig",
    "make_agents",
    "missing_agreement",
    "token_f1",
]

T = TypeVar("T")
RC = ev.RationaleCategory

# One pool for every profile: the text of a rationale does not reveal who wrote it.
RATIONALES: Mapping[ev.RationaleCategory, tuple[str, ...]] = {
    RC.ACCURATE: (
        "The reply answers the guest's question correctly.",
        "Matches what the hotel's information says; sent without changes.",
        "Correct details and a friendly tone, nothing to add.",
    ),
    RC.INCOMPLETE: (
        "Right direction, but it left out details the guest asked for.",
        "Added the missing detail from the hotel's information before sending.",
        "Only partly answers the question; completed the rest myself.",
    ),
    RC.INACCURATE: (
        "The suggested replies state facts that contradict the hotel's information.",
        "Neither reply gets the answer right; wrote my own from the knowledge base.",
        "Wrong information about the amenities, had to rewrite it.",
    ),
    RC.TONE: (
        "Content is fine but the wording felt abrupt; softened it.",
        "Rephrased it to sound more welcoming to the guest.",
    ),
    RC.POLICY: (
        "The reply promises something the hotel's policy does not allow.",
        "Adjusted the wording so it follows the booking policy.",
    ),
    RC.IRRELEVANT: (
        "The reply talks about a different topic than the guest's question.",
        "Answers a question the guest did not ask.",
    ),
    RC.OTHER: (
        "Adjusted the reply to fit the flow of the conversation.",
        "Reworked the reply so it reads naturally after the last message.",
    ),
}
OPENERS = ("Thanks for waiting.", "Let me check that for you.", "Good question.")
COURTESY = ("Is there anything else I can help you with?", "Let me know if you need more.")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


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
    """What only the simulator holds about a case: the latent behind an agent's perception.

    ``turns`` is the conversation as the agent saw it, (speaker "U"/"S", text), ending
    with the customer's question."""

    case_id: str
    gold_ids: tuple[str, ...]
    reference: str
    turns: tuple[tuple[str, str], ...] = ()


def missing_agreement(pairs: Iterable[tuple[ev.MissingKnowledge, CaseTruth]]) -> float:
    """Item-level agreement with gold: the share of reported missing-knowledge ids that
    are gold ids of their case (the paper's agent-vs-expert agreement); 0.0 when nothing
    was reported."""
    hits = total = 0
    for event, truth in pairs:
        for item in event.items:
            total += 1
            hits += item.knowledge_id in truth.gold_ids
    return hits / total if total else 0.0


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` (split after . ! ?)."""
    return [s for s in _SENTENCE.split(text.strip()) if s]


def revise(candidate: str, reference: str, rng: random.Random, share: float) -> str:
    """An edit: the candidate kept, with each reference sentence it lacks added with
    chance ``share`` (a courtesy line when none is), never the reference itself."""
    kept = candidate.strip()
    added = [s for s in sentences(reference) if containment(s, kept)[0] < 0.5]
    added = [s for s in added if rng.random() < share] or [rng.choice(COURTESY)]
    out = " ".join([kept, *added]).strip()
    return out if out != reference.strip() else f"{out} {COURTESY[0]}"


def own_reply(reference: str, rng: random.Random, keep: float) -> str:
    """A rejection's reply, the agent's own: an opener and part of what it knows the
    answer says (each sentence kept with chance ``keep``), never the reference itself."""
    parts = sentences(reference)
    kept = [s for s in parts if rng.random() < keep] or parts[:1]
    return " ".join([rng.choice(OPENERS), *kept])


def _weighted(rng: random.Random, shares: Mapping[T, float]) -> T:
    keys = list(shares)
    return rng.choices(keys, weights=[shares[k] for k in keys])[0]


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@dataclass(frozen=True)
class _Verdict:
    """What an agent decided about one suggestion, before it is written as events."""

    preferred: ev.Preference
    labels: list[ev.Relevance]  # one per shown object, in the order shown
    decision: ev.Adoption
    candidate_id: str | None
    final_text: str
    category: ev.RationaleCategory
    rationale: str


@dataclass
class Agent:
    """One simulated support agent with its profile, its memory of the last case and a
    seeded random stream; :meth:`annotate` turns a served suggestion into annotations."""

    agent_id: str
    profile: Profile
    kb: KnowledgeView
    seed: int = 0
    config: SimConfig = field(default_factory=SimConfig)
    annotations: int = 0
    corrupted: set[str] = field(default_factory=set)
    rng: random.Random = field(init=False)
    _last: _Verdict | None = field(default=None, init=False, repr=False)
    _cited: dict[str, set[str]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.agent_id}:{self.seed}")

    def careless_chance(self) -> float:
        """The chance the next annotation is written in a careless mode: always for a
        careless agent, growing with the shift for a fatigued one (half-life in
        annotations), never for the others."""
        if self.profile == "careless":
            return 1.0
        if self.profile == "fatigued":
            return 1 - float(0.5 ** (self.annotations / self.config.fatigue_half_life))
        return 0.0

    def _careless_mode(self) -> CarelessMode | None:
        chance = self.careless_chance()
        if chance <= 0 or self.rng.random() >= chance:
            return None
        modes = self.config.careless_modes
        if self.profile == "fatigued":
            modes = self.config.fatigued_modes
        return _weighted(self.rng, modes)

    def annotate(
        self, truth: CaseTruth, suggestion: ev.SuggestionServed, served_at: datetime
    ) -> list[ev.Event]:
        """Preference, adoption, relevance (when knowledge was shown) and missing
        knowledge (when the agent reports some) of one served suggestion."""
        mode = self._careless_mode()
        self.annotations += 1
        at = served_at + timedelta(seconds=self.rng.random())
        cands = {c.candidate_id: c.text for c in suggestion.candidates}
        self._cited = {c.candidate_id: set(c.cited_knowledge_ids) for c in suggestion.candidates}
        shown = [k.knowledge_id for k in suggestion.ranked]
        convo = [text for _, text in truth.turns] or [suggestion.query]
        if mode is None:
            verdict = self._careful(truth, cands, shown, convo)
            missing = self._recall_missing(truth, shown, convo)
        else:
            verdict = self._careless(mode, cands, shown)
            missing = self._careless_missing(suggestion)
        self._last = verdict
        common = {
            "request_id": suggestion.request_id,
            "case_id": truth.case_id,
            "agent_id": self.agent_id,
        }
        out = _verdict_events(verdict, shown, at, common)
        if missing:
            out.append(self._missing_event(missing, at, common))
        if mode is not None:
            self.corrupted.update(str(e.envelope.event_id) for e in out)
        return out

    # --- careful perception -------------------------------------------------------------

    def _careful(
        self, truth: CaseTruth, cands: dict[str, str], shown: list[str], convo: list[str]
    ) -> _Verdict:
        """Preference and adoption from a noisy reading of each candidate against what the
        answer must say; relevance from the perception model."""
        cfg = self.config
        a, b = cands.get("A", ""), cands.get("B", cands.get("A", ""))
        read_a = token_f1(a, truth.reference) + self.rng.gauss(0, cfg.reading_noise)
        read_b = token_f1(b, truth.reference) + self.rng.gauss(0, cfg.reading_noise)
        if abs(read_a - read_b) < cfg.tie_margin:
            preferred = ev.Preference.TIE
        else:
            preferred = ev.Preference.A if read_a > read_b else ev.Preference.B
        best_id, best_text, best = ("A", a, read_a) if read_a >= read_b else ("B", b, read_b)
        cid: str | None = best_id
        if best >= cfg.as_is_threshold:
            decision, category, sent = ev.Adoption.AS_IS, RC.ACCURATE, best_text
        elif best >= cfg.edit_threshold:
            decision, category = ev.Adoption.EDITED, RC(_weighted(self.rng, cfg.edit_reasons))
            sent = revise(best_text, truth.reference, self.rng, cfg.edit_share)
        else:
            decision, category = ev.Adoption.REJECTED, RC(_weighted(self.rng, cfg.reject_reasons))
            sent, cid = own_reply(truth.reference, self.rng, cfg.own_reply_keep), None
        rationale = self.rng.choice(RATIONALES[category])
        used = self._cited.get(cid, set()) if cid else set()
        labels = self._perceive_relevance(truth, shown, convo, used)
        return _Verdict(preferred, labels, decision, cid, sent, category, rationale)

    def _perceive_relevance(
        self, truth: CaseTruth, shown: list[str], convo: list[str], used: set[str]
    ) -> list[ev.Relevance]:
        """Each shown object's label: RELEVANT with the logistic chance of the truth
        (needed or not) and the surface cues (word overlap, same hotel, and whether the
        reply the agent just sent was built from it)."""
        cfg = self.config
        context = " ".join(convo[-3:])
        named = self.kb.mentioned_entity(convo)
        out = []
        for kid in shown:
            same = named is not None and self.kb.entity(kid) == named
            x = (
                cfg.relevance_bias
                + cfg.relevance_gold * (kid in truth.gold_ids)
                + cfg.relevance_similarity * cosine(self.kb.body(kid), context)
                + cfg.relevance_entity * same
                + cfg.relevance_sent * (kid in used)
            )
            relevant = self.rng.random() < _sigmoid(x)
            out.append(ev.Relevance.RELEVANT if relevant else ev.Relevance.IRRELEVANT)
        return out

    def _memory(self, convo: list[str], deferred: bool) -> str:
        """What the agent types into the search box: the hotel's name when it remembers
        it, and the content words it remembers of the last turns (some lost, and, hours
        later, some mixed up with other words of the conversation)."""
        cfg = self.config
        n = cfg.deferred_turns if deferred else cfg.immediate_turns
        drop = cfg.deferred_drop if deferred else cfg.immediate_drop
        replace = cfg.deferred_replace if deferred else 0.0
        recall = cfg.deferred_entity_recall if deferred else cfg.immediate_entity_recall
        recent, earlier = convo[-n:], convo[:-n]
        elsewhere = content_tokens(" ".join(earlier))
        named = self.kb.mentioned_entity(convo)
        words = [named] if named and self.rng.random() < recall else []
        for word in content_tokens(" ".join(recent)):
            r = self.rng.random()
            if r < drop:
                continue
            if r < drop + replace and elsewhere:
                word = self.rng.choice(elsewhere)
            words.append(word)
        return " ".join(words)

    def _recall_missing(self, truth: CaseTruth, shown: list[str], convo: list[str]) -> list[str]:
        """For each needed object that was not shown: search from memory, recognise it in
        the results with some chance, else perhaps settle for a near-miss (same hotel
        first) from the results."""
        needed = [g for g in truth.gold_ids if g not in shown]
        if not needed:
            return []
        cfg = self.config
        deferred = self.profile == "deferred"
        recognise = cfg.recognise_deferred if deferred else cfg.recognise_immediate
        settle = cfg.settle_deferred if deferred else cfg.settle_immediate
        query = self._memory(convo, deferred)
        results = [r for r in self.kb.search(query, cfg.search_k + len(shown)) if r not in shown]
        results = results[: cfg.search_k]
        named = self.kb.mentioned_entity(convo)
        reported: list[str] = []
        for g in needed:
            if g in results and self.rng.random() < recognise:
                reported.append(g)
            elif self.rng.random() < settle:
                pool = [r for r in results if r not in reported and r != g]
                pool.sort(key=lambda r: self.kb.entity(r) != named)  # stable: rank kept
                if pool:
                    reported.append(self.rng.choice(pool[:3]))
        return list(dict.fromkeys(reported))

    # --- careless modes -----------------------------------------------------------------

    def _careless(self, mode: CarelessMode, cands: dict[str, str], shown: list[str]) -> _Verdict:
        """An annotation in a careless mode; its text comes from the same pools as a
        careful one's, so only its pattern over many annotations gives it away."""
        last = self._last
        if mode == "copy" and last is not None:
            labels = [
                last.labels[min(i, len(last.labels) - 1)] if last.labels else ev.Relevance.RELEVANT
                for i in range(len(shown))
            ]
            return self._careless_verdict(
                last.preferred, last.decision, labels, last.category, last.rationale, cands
            )
        if mode == "random":
            category = self.rng.choice(list(RC))
            return self._careless_verdict(
                self.rng.choice(list(ev.Preference)),
                self.rng.choice(list(ev.Adoption)),
                [self.rng.choice(list(ev.Relevance)) for _ in shown],
                category,
                self.rng.choice(RATIONALES[category]),
                cands,
            )
        return self._careless_verdict(  # rubber stamp (and a copy with nothing to copy)
            ev.Preference.A,
            ev.Adoption.AS_IS,
            [ev.Relevance.RELEVANT] * len(shown),
            RC.ACCURATE,
            self.rng.choice(RATIONALES[RC.ACCURATE]),
            cands,
        )

    def _careless_verdict(
        self,
        preferred: ev.Preference,
        decision: ev.Adoption,
        labels: list[ev.Relevance],
        category: ev.RationaleCategory,
        rationale: str,
        cands: dict[str, str],
    ) -> _Verdict:
        """The careless annotation's sent text: the preferred candidate, with a courtesy
        line when "edited"; a hasty reply of its own when "rejected"."""
        cid = "B" if preferred is ev.Preference.B and "B" in cands else "A"
        text = cands.get(cid, "")
        if decision is ev.Adoption.AS_IS:
            return _Verdict(preferred, labels, decision, cid, text, category, rationale)
        if decision is ev.Adoption.EDITED:
            sent = f"{text.strip()} {self.rng.choice(COURTESY)}".strip()
            return _Verdict(preferred, labels, decision, cid, sent, category, rationale)
        hasty = " ".join([self.rng.choice(OPENERS), *sentences(text)[:1]])
        return _Verdict(preferred, labels, decision, None, hasty, category, rationale)

    def _careless_missing(self, suggestion: ev.SuggestionServed) -> list[str]:
        """Random picks from the retrieved list, or (most often) nothing."""
        retrieved = [k.knowledge_id for k in suggestion.retrieved]
        if not retrieved or self.rng.random() >= self.config.careless_missing:
            return []
        return self.rng.sample(retrieved, k=min(len(retrieved), self.rng.randint(1, 2)))

    def _missing_event(
        self, missing: list[str], at: datetime, common: dict[str, str]
    ) -> ev.MissingKnowledge:
        """The missing-knowledge annotation: seconds after the look-up, or hours later
        from memory for a deferred agent (the paper's immediate vs deferred timing)."""
        deferred = self.profile == "deferred"
        looked = at - timedelta(seconds=10)
        low, high = self.config.deferred_delay_h
        later = timedelta(hours=low + self.rng.random() * (high - low))
        noted = at + (later if deferred else timedelta(seconds=3))
        return ev.MissingKnowledge(
            envelope=ev.Envelope(event_time=noted, producer="aitl-simulator"),
            items=[ev.MissingItem(knowledge_id=k) for k in missing],
            timing=ev.AnnotationTiming.DEFERRED if deferred else ev.AnnotationTiming.IMMEDIATE,
            looked_up_at=looked,
            annotated_at=noted,
            **common,
        )


def _verdict_events(
    verdict: _Verdict, shown: list[str], at: datetime, common: dict[str, str]
) -> list[ev.Event]:
    """The preference, adoption and (if knowledge was shown) relevance events of a
    verdict, a second apart so they arrive in the order an agent clicks them."""

    def envelope(offset: float) -> ev.Envelope:
        return ev.Envelope(event_time=at + timedelta(seconds=offset), producer="aitl-simulator")

    out: list[ev.Event] = [
        ev.PairwisePreference(envelope=envelope(0), preferred=verdict.preferred, **common),
        ev.AdoptionDecision(
            envelope=envelope(1),
            decision=verdict.decision,
            candidate_id=verdict.candidate_id,
            final_text=verdict.final_text,
            rationale_text=verdict.rationale,
            rationale_category=verdict.category,
            **common,
        ),
    ]
    if shown:
        labels = [
            ev.RelevanceLabel(knowledge_id=k, label=label)
            for k, label in zip(shown, verdict.labels, strict=True)
        ]
        out.append(ev.KnowledgeRelevance(envelope=envelope(2), labels=labels, **common))
    return out


def make_agents(
    n: int,
    mix: Mapping[Profile, float] | None,
    seed: int = 0,
    *,
    kb: KnowledgeView,
    config: SimConfig | None = None,
) -> list[Agent]:
    """``n`` agents whose profiles follow ``mix`` (shares summing to 1; None: the
    config's mix), all searching ``kb``, seeded by ``seed``."""
    config = config or SimConfig(seed=seed)
    shares = dict(mix if mix is not None else config.mix)
    rng = random.Random(seed)
    profiles: list[Profile] = []
    for profile, share in shares.items():
        profiles.extend([profile] * round(share * n))
    while len(profiles) < n:
        profiles.append("careful")
    rng.shuffle(profiles)
    return [Agent(f"agent-{i:03d}", p, kb, seed, config) for i, p in enumerate(profiles[:n])]


def crew_annotations(
    profile: Profile,
    kb: KnowledgeView,
    truths: Sequence[CaseTruth],
    served: Sequence[ev.SuggestionServed],
    at: datetime,
    *,
    seeds: Iterable[int] = (0, 1, 2),
    crew: int = 4,
    config: SimConfig | None = None,
) -> Iterator[tuple[ev.Event, CaseTruth]]:
    """Every case annotated by a crew of ``crew`` agents of ``profile`` (case ``i`` by
    agent ``i % crew``), once per seed, each event with its case's truth: how the
    missing-knowledge agreement is measured (one pass's spread is about +-0.03, so over
    several seeds) by the calibration test and the benchmark alike."""
    cfg = config or SimConfig()
    for seed in seeds:
        agents = [Agent(f"{profile}-{i}", profile, kb, seed=seed, config=cfg) for i in range(crew)]
        for i, (truth, suggestion) in enumerate(zip(truths, served, strict=True)):
            for event in agents[i % crew].annotate(truth, suggestion, at):
                yield event, truth
