"""The judge catches careless agents from evidence across agents, not from one text.

A synthetic shift: 8 careful agents (12% label noise) and 3 careless ones (a
rubber-stamper, a random clicker, a copier) with the same plausible rationales, over 300
requests that share 60 knowledge objects. Each request is handled by one agent, who
sends an adoption, a preference and relevance labels for the 8 objects shown.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from kernel import events as ev
from kernel.reasons import Reason
from processors.judge import JudgeInput, RuleJudge
from processors.judge.agreement import AgreementTracker
from processors.judge.base import reason_code
from tests.factories import T0

TOPICS = 20
RATIONALES = [
    "Right answer, needed the trip dates.",
    "Tone was a bit stiff, softened it.",
    "Covered the policy but missed the exception.",
    "Accurate and complete for this customer.",
    "Mentioned the wrong fee, corrected it.",
    "Good reply, added the account detail.",
]
CAREFUL = [f"careful-{i}" for i in range(8)]
CARELESS = ["stamper", "clicker", "copier"]


def kid(topic: int, j: int) -> str:
    return f"kb-{topic}-{j}"


KB = {
    kid(t, j): f"Policy {t}.{j}: terms for case family {t} variant {j}"
    for t in range(20)
    for j in range(3)
}


@dataclass
class Request:
    suggestion: ev.SuggestionServed
    shown: list[str]
    relevant: set[str]
    better: str


def make_request(rng: random.Random, n: int) -> Request:
    topic, variant = rng.randrange(TOPICS), rng.randrange(3)
    own = [kid(topic, j) for j in range(3)]
    others = [k for k in KB if k not in own]
    shown = own + rng.sample(others, 5)
    rng.shuffle(shown)
    relevant = {kid(topic, 0)} | ({kid(topic, 1)} if variant == 0 else set())
    better = "A" if rng.random() < 0.55 else "B"
    texts = {
        better: f"Here is what applies to you [{kid(topic, 0)}].",
        "B" if better == "A" else "A": f"Something else may apply [{kid(topic, 2)}].",
    }
    cites = {c: [kid(topic, 0) if c == better else kid(topic, 2)] for c in "AB"}
    sugg = ev.SuggestionServed(
        request_id=f"req-{n}",
        case_id=f"case-{n}",
        query=f"customer question {variant} about family {topic}",
        retrieved=[ev.ScoredKnowledge(knowledge_id=k, score=0.9) for k in shown],
        ranked=[ev.ScoredKnowledge(knowledge_id=k, score=0.9) for k in shown],
        candidates=[
            ev.Candidate(
                candidate_id=c, text=texts[c], model_version="g", cited_knowledge_ids=cites[c]
            )
            for c in "AB"
        ],
        model_versions={"retriever": "r", "ranker": "k", "generator": "g"},
        latency_ms=1.0,
    )
    return Request(sugg, shown, relevant, better)


@dataclass
class Agent:
    name: str
    mode: str  # careful | stamper | clicker | copier
    last: dict[str, Any] = field(default_factory=dict)

    def act(self, rng: random.Random, req: Request) -> tuple[str, str, str, list[str]]:
        """(preferred, decision, candidate sent, labels by position)."""
        if self.mode == "stamper":
            return "A", "AS_IS", "A", ["RELEVANT"] * len(req.shown)
        if self.mode == "clicker":
            labels = [rng.choice(["RELEVANT", "IRRELEVANT"]) for _ in req.shown]
            return rng.choice("AB"), rng.choice(["AS_IS", "EDITED"]), rng.choice("AB"), labels
        if self.mode == "copier" and self.last:
            return self.last["pref"], self.last["decision"], self.last["sent"], self.last["labels"]
        labels = [
            ("RELEVANT" if (k in req.relevant) != (rng.random() < 0.12) else "IRRELEVANT")
            for k in req.shown
        ]
        decision = "AS_IS" if rng.random() < 0.6 else "EDITED"
        self.last = {"pref": req.better, "decision": decision, "sent": req.better, "labels": labels}
        return req.better, decision, req.better, labels


def stamp(event: Any, minutes: int) -> Any:
    env = event.envelope.model_copy(update={"event_time": T0 + timedelta(minutes=minutes)})
    return event.model_copy(update={"envelope": env})


def shift(seed: int = 7, requests: int = 300) -> list[tuple[str, JudgeInput]]:
    rng = random.Random(seed)
    agents = [Agent(a, "careful") for a in CAREFUL] + [Agent(a, a) for a in CARELESS]
    out: list[tuple[str, JudgeInput]] = []
    for n in range(requests):
        req = make_request(rng, n)
        agent = rng.choice(agents)
        pref, decision, sent, labels = agent.act(rng, req)
        text = next(c.text for c in req.suggestion.candidates if c.candidate_id == sent)
        ids = {"request_id": req.suggestion.request_id, "case_id": req.suggestion.case_id}
        adoption = stamp(
            ev.AdoptionDecision(
                **ids,
                agent_id=agent.name,
                decision=ev.Adoption(decision),
                candidate_id=sent,
                final_text=text if decision == "AS_IS" else text + " Anything else I can do?",
                rationale_text=rng.choice(RATIONALES),
            ),
            n,
        )
        preference = stamp(
            ev.PairwisePreference(**ids, agent_id=agent.name, preferred=ev.Preference(pref)), n
        )
        relevance = stamp(
            ev.KnowledgeRelevance(
                **ids,
                agent_id=agent.name,
                labels=[
                    ev.RelevanceLabel(knowledge_id=k, label=ev.Relevance(lab))
                    for k, lab in zip(req.shown, labels, strict=True)
                ],
            ),
            n,
        )
        kb = {k: KB[k] for k in req.shown}
        for annotation in (adoption, preference, relevance):
            inp = JudgeInput(
                annotation, req.suggestion, agent.name, adoption=adoption, knowledge=kb
            )
            out.append((agent.mode, inp))
    return out


def caught(verdict: Any) -> bool:
    return not verdict.accepted or verdict.weight < 0.5


@pytest.mark.parametrize("seed", [7, 11])
def test_the_judge_catches_careless_agents_and_keeps_careful_ones(seed: int) -> None:
    judge = RuleJudge()
    verdicts = [(mode, judge.evaluate(inp)) for mode, inp in shift(seed)]
    careless = [v for mode, v in verdicts if mode != "careful"]
    careful = [v for mode, v in verdicts if mode == "careful"]
    recall = sum(caught(v) for v in careless) / len(careless)
    false_rejection = sum(not v.accepted for v in careful) / len(careful)
    assert recall >= 0.6, recall
    assert false_rejection <= 0.15, false_rejection
    for mode in CARELESS:  # each kind of carelessness is caught, not just one of them
        mine = [v for m, v in verdicts if m == mode]
        assert sum(caught(v) for v in mine) / len(mine) >= 0.5, mode
    kept = [v.weight for v in careful if v.accepted]
    assert sum(kept) / len(kept) >= 0.7  # careful agents keep most of their weight
    assert {"low_agreement", "atypical_behaviour"} <= {
        reason_code(r) for _, v in verdicts for r in v.reasons
    }


def test_without_the_agreement_tracker_the_careless_mostly_pass() -> None:
    """The same shift judged by the rules, record and fatigue alone: the careless agents'
    plausible rationales and self-consistent replies get through (what the tracker adds)."""
    judge = RuleJudge(agreement=None)
    careless = [judge.evaluate(inp) for mode, inp in shift(7) if mode != "careful"]
    assert sum(caught(v) for v in careless) / len(careless) < 0.4


def test_agreement_scores_are_on_the_verdict() -> None:
    judge = RuleJudge()
    verdicts = [judge.evaluate(inp) for _, inp in shift(7, 60)]
    last = verdicts[-1].scores
    assert {"agent_agreement", "population_agreement", "agent_reliability"} <= set(last)
    assert any("label_agreement" in v.scores for v in verdicts)


def test_the_reason_codes_reject() -> None:
    assert Reason.LOW_AGREEMENT.rejects and Reason.ATYPICAL_BEHAVIOUR.rejects


def test_a_label_against_the_others_consensus_scores_low() -> None:
    tracker = AgreementTracker()
    weights = {f"a{i}": 0.6 for i in range(5)}
    keys = [("k", "kb-1")]
    for agent in weights:
        tracker.counts.setdefault(keys[0], {})[agent] = [9.0, 10.0]  # 90% relevant
        tracker.base[agent] = [20.0, 80.0]
    q, item = tracker.consensus(keys, "me", weights)
    assert q > 0.8 and item == pytest.approx(30.0)
    # the agent's own labels are not its own consensus
    tracker.counts[keys[0]]["me"] = [0.0, 100.0]
    assert tracker.consensus(keys, "me", weights | {"me": 0.6})[0] == pytest.approx(q)


def test_all_relevant_labels_the_sent_reply_ignores_are_rejected() -> None:
    inputs = [inp for _, inp in shift(3, 40)]
    inp = next(i for i in inputs if isinstance(i.annotation, ev.KnowledgeRelevance))
    labels = [
        ev.RelevanceLabel(knowledge_id=lab.knowledge_id, label=ev.Relevance.RELEVANT)
        for lab in inp.annotation.labels
    ]
    unrelated = inp.adoption.model_copy(  # type: ignore[union-attr]
        update={"decision": ev.Adoption.EDITED, "final_text": "We will call you back."}
    )
    stamped = inp.annotation.model_copy(update={"labels": labels})
    v = RuleJudge().evaluate(JudgeInput(stamped, inp.suggestion, "x", unrelated, inp.knowledge))
    assert not v.accepted and "relevance_contradicts_reply" in {reason_code(r) for r in v.reasons}
    used = JudgeInput(stamped, inp.suggestion, "x", inp.adoption, inp.knowledge)
    assert RuleJudge().evaluate(used).accepted


def test_the_population_view_is_refreshed_and_verdicts_match_a_live_one() -> None:
    """The cached view (recomputed every ``refresh_every`` annotations) decides as the
    live one (recomputed on every annotation) on the synthetic shift, and an agent's
    running habit counts equal its window's."""
    from processors.judge.agreement import AgreementConfig, _median_without

    live = RuleJudge(agreement=AgreementTracker(AgreementConfig(refresh_every=1)))
    cached = RuleJudge()
    inputs = [inp for _, inp in shift(7)]
    a = [live.evaluate(inp).accepted for inp in inputs]
    b = [cached.evaluate(inp).accepted for inp in inputs]
    assert sum(x != y for x, y in zip(a, b, strict=True)) <= len(a) * 0.02
    tracker = cached.agreement
    assert tracker is not None
    for st in tracker.agents.values():
        assert st.habit_sums == {name: sum(w) for name, w in st.habits.items()}
    assert _median_without([0.1, 0.2, 0.9], 0.9) == pytest.approx(0.15)
    assert _median_without([0.1, 0.2, 0.9], None) == 0.2
    assert _median_without([0.1, 0.2, 0.9], 0.5) == 0.2  # not in the list: nothing removed
