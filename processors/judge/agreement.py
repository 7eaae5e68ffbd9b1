"""Evidence across agents: agreement on knowledge relevance and behaviour vs the population.

One annotation's text cannot tell a careless agent from a careful one when both write
plausible rationales. What gives a careless agent away is how its labels sit with
everybody else's, and how its habits compare with the other agents':

**Agreement (a one-coin Dawid-Skene model, online).** Every agent *j* has an accuracy
``a_j``: the chance that its relevance label is right. The "truth" of a label is the
other agents' accuracy-weighted share of RELEVANT on the same knowledge object, each
label counting ``(2 a_j - 1)+`` (a coin-flipper's votes count nothing), shrunk from the
most specific context with data to the broadest (same query and object, then same top
ranked object and object, then the object, then the population's base rate; each level
a Beta prior of strength ``shrink`` centred on the next). This is DS's E-step, soft
because relevance depends on the request and one object is not always relevant or not.
The label's expected correctness under it, ``q`` for RELEVANT and ``1 - q`` for
IRRELEVANT (PARTIAL halfway), is its ``label_agreement``; the agent's accuracy is the
decayed mean of those (the M-step) under an empirical-Bayes Beta prior centred on the
population's accuracy (the median over agents with enough evidence), so a new agent
starts as trusted as the typical one. The agent's votes are re-weighted with its current
accuracy whenever they are read, so a careless agent found out later stops polluting the
consensus retroactively.

**Reliability.** ``(a_j - 0.5) / (a_pop - 0.5)`` clipped to [0, 1]: the agent's accuracy
above chance as a share of the typical agent's. It multiplies every annotation's weight
(preference, adoption, ... not only relevance: a rubber-stamper's preferences are as
worthless as its labels). Once the agent has ``min_evidence`` labels on record and the
upper end of its accuracy's credible interval is below ``0.5 + min_relative *
(a_pop - 0.5)``, everything it sends is rejected (``low_agreement``).

**Behaviour vs the population.** Per agent, over its last ``window`` annotations: the
share of A preferences, of AS_IS adoptions, of label sets all RELEVANT, and of label
sets identical (by position) to its previous one. The population's share is the median
over the other agents (robust to a few careless ones). A share far above it (binomial
z at least ``flag_z`` and ``min_gap`` above) multiplies the reliability by
``flag_weight``; at least ``reject_z`` rejects (``atypical_behaviour``). Rubber-stamping
(always A, AS_IS, all relevant) and copying (the same labels as last time) are extreme
there while agreement alone may miss them: copied labels can agree by luck of position.

Labels of one annotation share its request, so they are not independent evidence: one
annotation counts at most ``max_label_evidence`` labels toward the accuracy.

Like fatigue and the record, the state lives in one worker's memory, sees only the
annotations this worker judges, and is rebuilt from nothing on a restart: after one,
every agent starts at the population prior and nothing is rejected until evidence
accumulates again.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import deque
from dataclasses import dataclass, field

from kernel.annotations import Annotation, JudgeInput
from kernel.annotations.adoption import Adoption, AdoptionDecision
from kernel.annotations.preference import PairwisePreference, Preference
from kernel.annotations.relevance import LABEL_VALUE, KnowledgeRelevance
from kernel.reasons import Reason

STATS = ("prefer_a", "as_is", "all_relevant", "repeat_labels")


@dataclass(frozen=True)
class AgreementConfig:
    """Thresholds of :class:`AgreementTracker` (see the module docstring)."""

    prior_accuracy: float = 0.8  # the population's accuracy until agents have evidence
    prior_strength: float = 8.0  # label-evidence units of the agent's Beta prior
    decay: float = 0.98  # per relevance annotation: the accuracy forgets old evidence
    max_label_evidence: int = 4  # labels of one annotation counted toward the accuracy
    shrink: float = 2.0  # Beta prior strength of each consensus level on the next
    min_item_evidence: float = 1.0  # others' weighted labels on the object to score a label
    min_evidence: float = 40.0  # label evidence before the agreement may reject
    min_relative: float = 0.5  # reject below chance + this share of the typical margin
    z: float = 1.64  # one-sided credible bound of "confidently below"
    min_agents: int = 3  # agents with min_evidence before the population's median counts
    window: int = 50  # behaviour: annotations per statistic per agent
    min_behaviour: int = 10  # behaviour: annotations before the share counts
    min_labels: int = 3  # label sets shorter than this say nothing about all-relevant/repeats
    flag_z: float = 3.0
    reject_z: float = 5.0
    min_gap: float = 0.3  # share minus population share needed to flag or reject
    flag_weight: float = 0.5
    # the population's view (median accuracy, vote weights, habit medians) is recomputed
    # every this many annotations or when a new agent appears, not on each one: an
    # annotation's cost stays flat in the number of agents
    refresh_every: int = 20


@dataclass(frozen=True)
class AgreementSignal:
    weight: float  # the agent's reliability, behaviour flags included
    reasons: tuple[str, ...]
    scores: dict[str, float]


@dataclass
class _Agent:
    correct: float = 0.0  # decayed expected-correct label evidence
    evidence: float = 0.0  # decayed label evidence
    last_labels: tuple[str, ...] | None = None
    habits: dict[str, deque[bool]] = field(default_factory=dict)
    habit_sums: dict[str, int] = field(default_factory=dict)  # True values in each window


@dataclass
class _Population:
    """The other agents as of the last refresh (see ``AgreementConfig.refresh_every``)."""

    accuracy: float
    weights: dict[str, float]
    shares: dict[str, list[float]]  # statistic -> sorted shares of agents with enough data
    share_of: dict[str, dict[str, float]]  # statistic -> agent -> its share in ``shares``
    base: tuple[float, float]  # every agent's weighted (relevant, labels), all objects
    at: int  # annotations observed when computed
    agents: int


Counts = dict[str, list[float]]  # agent -> [relevant value, labels]


@dataclass
class AgreementTracker:
    """Per-worker consensus of relevance labels and per-agent accuracy and habits."""

    config: AgreementConfig = field(default_factory=AgreementConfig)
    agents: dict[str, _Agent] = field(default_factory=dict)
    counts: dict[tuple[str, ...], Counts] = field(default_factory=dict)
    base: Counts = field(default_factory=dict)
    observed: int = 0
    _view: _Population | None = None

    # -- the population --------------------------------------------------------------
    def population_accuracy(self) -> float:
        cfg = self.config
        seen = [
            st.correct / st.evidence
            for st in self.agents.values()
            if st.evidence >= cfg.min_evidence
        ]
        if len(seen) < cfg.min_agents:
            return cfg.prior_accuracy
        return statistics.median(seen)

    def accuracy(self, agent: str, pop: float | None = None) -> tuple[float, float]:
        """(posterior mean, posterior sd) of the agent's accuracy."""
        pop = self.population_accuracy() if pop is None else pop
        st = self.agents.get(agent) or _Agent()
        k = self.config.prior_strength
        alpha, beta = k * pop + st.correct, k * (1 - pop) + st.evidence - st.correct
        mean = alpha / (alpha + beta)
        return mean, math.sqrt(mean * (1 - mean) / (alpha + beta + 1))

    def _vote_weights(self, pop: float) -> dict[str, float]:
        return {a: max(0.0, 2 * self.accuracy(a, pop)[0] - 1) for a in self.agents}

    def population(self) -> _Population:
        """The population's view, recomputed when ``refresh_every`` annotations went by
        or a new agent appeared (each costs a pass over every agent)."""
        view = self._view
        if (
            view is None
            or self.observed - view.at >= self.config.refresh_every
            or len(self.agents) != view.agents
        ):
            pop = self.population_accuracy()
            shares: dict[str, list[float]] = {}
            share_of: dict[str, dict[str, float]] = {}
            for name in STATS:
                mine = share_of[name] = {}
                for agent, st in self.agents.items():
                    window = st.habits.get(name)
                    if window is not None and len(window) >= self.config.min_behaviour:
                        mine[agent] = st.habit_sums[name] / len(window)
                shares[name] = sorted(mine.values())
            weights = self._vote_weights(pop)
            base = self._weighted(self.base, weights, "")
            view = self._view = _Population(
                pop, weights, shares, share_of, base, self.observed, len(self.agents)
            )
        return view

    @staticmethod
    def _weighted(counts: Counts, weights: dict[str, float], me: str) -> tuple[float, float]:
        rel = total = 0.0
        for agent, (r, n) in counts.items():
            if agent != me:
                w = weights.get(agent, 0.0)
                rel += w * r
                total += w * n
        return rel, total

    def consensus(
        self,
        keys: list[tuple[str, ...]],
        me: str,
        weights: dict[str, float],
        base: tuple[float, float] | None = None,
    ) -> tuple[float, float]:
        """(others' probability that the label is RELEVANT, others' weighted labels on the
        object); ``keys`` from broadest to most specific. ``base``: every agent's weighted
        (relevant, labels) over all objects, precomputed (``me``'s share is taken out)."""
        if base is None:
            rel, total = self._weighted(self.base, weights, me)
        else:
            w = weights.get(me, 0.0)
            r, n = self.base.get(me, (0.0, 0.0))
            rel, total = max(0.0, base[0] - w * r), max(0.0, base[1] - w * n)
        q = (rel + 1.0) / (total + 4.0)  # Beta(1, 3): most shown objects are irrelevant
        item = 0.0
        for i, key in enumerate(keys):
            rel, total = self._weighted(self.counts.get(key, {}), weights, me)
            if i == 0:
                item = total
            q = (rel + self.config.shrink * q) / (total + self.config.shrink)
        return q, item

    # -- one annotation --------------------------------------------------------------
    def observe(self, inp: JudgeInput, *, learn: bool = True) -> AgreementSignal:
        """Scores ``inp`` against the others, updates the agent (if ``learn``: the rules did
        not reject it), and says how far to trust the agent now."""
        cfg = self.config
        st = self.agents.setdefault(inp.agent, _Agent())
        self.observed += 1
        view = self.population()
        pop = view.accuracy
        scores: dict[str, float] = {}
        ann = inp.annotation
        if isinstance(ann, KnowledgeRelevance):
            label_agreement = self._relevance(inp, ann, st, view, learn)
            if label_agreement is not None:
                scores["label_agreement"] = round(label_agreement, 4)
        if learn:
            self._habits(st, ann)
        mean, sd = self.accuracy(inp.agent, pop)
        margin = pop - 0.5
        reliability = min(1.0, max(0.0, (mean - 0.5) / margin)) if margin > 0.05 else 1.0
        reasons: list[str] = []
        threshold = 0.5 + cfg.min_relative * margin
        if margin > 0.05 and st.evidence >= cfg.min_evidence and mean + cfg.z * sd < threshold:
            reasons.append(Reason.LOW_AGREEMENT(f"{mean:.2f}<{threshold:.2f}"))
        worst = 0.0
        for name, share, z in self._extremes(inp.agent, view):
            worst = max(worst, z)
            if z >= cfg.reject_z:
                reasons.append(Reason.ATYPICAL_BEHAVIOUR(f"{name} {share:.2f}"))
            reliability *= cfg.flag_weight
        scores |= {
            "agent_agreement": round(mean, 4),
            "population_agreement": round(pop, 4),
            "agent_reliability": round(reliability, 4),
            "behaviour_z": round(worst, 2),
        }
        return AgreementSignal(reliability, tuple(reasons), scores)

    def _relevance(
        self, inp: JudgeInput, ann: KnowledgeRelevance, st: _Agent, view: _Population, learn: bool
    ) -> float | None:
        cfg = self.config
        sugg = inp.suggestion
        query = " ".join(sugg.query.lower().split())
        anchor = sugg.ranked[0].knowledge_id if sugg.ranked else ""
        weights = view.weights
        agreement: list[float] = []
        for lab in ann.labels:
            kid, value = lab.knowledge_id, LABEL_VALUE[lab.label]
            keys = [("k", kid), ("a", anchor, kid), ("q", query, kid)]
            q, item = self.consensus(keys, inp.agent, weights, view.base)
            if item >= cfg.min_item_evidence:
                agreement.append(value * q + (1 - value) * (1 - q))
            if learn:
                for key in keys:
                    cell = self.counts.setdefault(key, {}).setdefault(inp.agent, [0.0, 0.0])
                    cell[0] += value
                    cell[1] += 1
                cell = self.base.setdefault(inp.agent, [0.0, 0.0])
                cell[0] += value
                cell[1] += 1
        if not agreement:
            return None
        mean = sum(agreement) / len(agreement)
        if learn:
            n = min(len(agreement), cfg.max_label_evidence)
            st.correct = cfg.decay * st.correct + mean * n
            st.evidence = cfg.decay * st.evidence + n
        return mean

    # -- habits ----------------------------------------------------------------------
    def _habits(self, st: _Agent, ann: Annotation) -> None:
        cfg = self.config

        def note(name: str, value: bool) -> None:
            window = st.habits.setdefault(name, deque(maxlen=cfg.window))
            total = st.habit_sums.get(name, 0) + value
            if len(window) == window.maxlen:
                total -= window[0]  # about to fall out of the window
            window.append(value)
            st.habit_sums[name] = total

        if isinstance(ann, PairwisePreference):
            note("prefer_a", ann.preferred is Preference.A)
        elif isinstance(ann, AdoptionDecision):
            note("as_is", ann.decision is Adoption.AS_IS)
        elif isinstance(ann, KnowledgeRelevance) and len(ann.labels) >= cfg.min_labels:
            labels = tuple(lab.label.value for lab in ann.labels)
            note("all_relevant", all(v == "RELEVANT" for v in labels))
            if st.last_labels is not None and len(st.last_labels) == len(labels):
                note("repeat_labels", labels == st.last_labels)
            st.last_labels = labels

    def _extremes(self, agent: str, view: _Population) -> list[tuple[str, float, float]]:
        """(statistic, share, z) of the agent's habits at least ``flag_z`` above the median
        of the other agents' shares (and ``min_gap`` above it)."""
        cfg = self.config
        st = self.agents[agent]
        out: list[tuple[str, float, float]] = []
        for name in STATS:
            window = st.habits.get(name)
            if window is None or len(window) < cfg.min_behaviour:
                continue
            others = view.shares[name]
            own = view.share_of[name].get(agent)
            if len(others) - (own is not None) < cfg.min_agents:
                continue
            p = min(0.98, max(0.02, _median_without(others, own)))
            n, share = len(window), st.habit_sums[name] / len(window)
            z = (share - p) * math.sqrt(n / (p * (1 - p)))
            if z >= cfg.flag_z and share - p >= cfg.min_gap:
                out.append((name, share, z))
        return out


def _median_without(ordered: list[float], value: float | None) -> float:
    """The median of sorted ``ordered`` with one occurrence of ``value`` left out."""
    if value is None:
        return statistics.median(ordered)
    i = bisect.bisect_left(ordered, value)
    rest = ordered[:i] + ordered[i + 1 :] if i < len(ordered) and ordered[i] == value else ordered
    return statistics.median(rest)
