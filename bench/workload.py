"""Synthetic annotation traffic with a known answer, for the integration tests, the
benchmark and demos: which annotations the Virtual Judge must accept or reject, which
arrive before their context, which never get one, and malformed messages.

Each request has a suggestion (candidates A and B citing different knowledge) and four
annotations: adoption, preference, relevance, missing knowledge. A ``bad_share`` of
requests gets exactly one annotation made wrong in a way one rule catches.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kernel import events as ev

T0 = datetime(2026, 11, 2, tzinfo=UTC)
TOPICS_WORDS = [
    ("roaming", "abroad daily pass network partner"),
    ("refund", "money returned card statement days"),
    ("invoice", "billing period amount due date"),
    ("router", "restart cable light modem reset"),
    ("contract", "cancellation notice months term fee"),
    ("sim", "activation card slot pin puk"),
]


@dataclass
class Workload:
    knowledge: list[ev.KnowledgeChanged] = field(default_factory=list)
    #: every event in publishing order (contexts and annotations interleaved)
    stream: list[ev.Event] = field(default_factory=list)
    annotations: list[ev.Event] = field(default_factory=list)  # with a context, eventually
    orphans: list[ev.Event] = field(default_factory=list)  # whose suggestion never comes
    expected: dict[uuid.UUID, bool] = field(default_factory=dict)  # event id -> accept?
    late_context: set[str] = field(default_factory=set)  # request ids published out of order


def _kid(i: int) -> str:
    return f"kb-{i:05d}"


_KINDS = ("adoption", "preference", "relevance", "missing")


@dataclass(frozen=True)
class _Request:
    """One served request: its ids, envelopes, knowledge picks and the context published
    for it (the customer's message on every other request, then the suggestion)."""

    case_id: str
    request_id: str
    later: ev.Envelope  # the annotations' envelope, 30 s after the suggestion
    picks: list[int]  # 10 retrieved knowledge indices, then the missing one, then a spare
    a_text: str
    b_text: str
    interaction: list[ev.Event]
    suggestion: ev.SuggestionServed


@dataclass(frozen=True)
class _Draw:
    """The seeded choices behind one request's annotations."""

    agent: str
    chosen: str  # the candidate the agent sends, "A" or "B"
    bad: str  # which annotation is made wrong ("" for none)


def make_workload(
    n_annotations: int,
    *,
    seed: int = 0,
    bad_share: float = 0.2,
    late_share: float = 0.05,
    orphan_share: float = 0.01,
    n_knowledge: int = 300,
    n_agents: int = 60,
    span: timedelta = timedelta(days=2),
) -> Workload:
    """About ``n_annotations`` annotations (four per request) plus their contexts."""
    rng = random.Random(seed)
    w = Workload()
    w.knowledge.extend(_knowledge(n_knowledge))
    n_requests = max(1, n_annotations // 4)
    step = span / n_requests
    late: list[tuple[int, list[ev.Event]]] = []  # (publish after index, events)
    for r in range(n_requests):
        req = _serve(rng, r, T0 + step * r, n_knowledge)
        if rng.random() < orphan_share:
            orphan = _orphan(req)
            w.orphans.append(orphan)
            w.stream += [*req.interaction, orphan]
            continue
        context = [*req.interaction, req.suggestion]
        draw = _draw(rng, n_agents, bad_share)
        anns = _annotations(req, draw)
        for name, a in zip(_KINDS, anns, strict=True):
            w.expected[a.envelope.event_id] = name != draw.bad
        w.annotations += anns
        if rng.random() < late_share:  # the annotations overtake their context
            w.late_context.add(req.request_id)
            w.stream += anns
            late.append((len(w.stream) + rng.randrange(5, 60), context))
        else:
            w.stream += [*context, *anns]
    for at, context in sorted(late, key=lambda x: x[0], reverse=True):
        w.stream[at:at] = context
    return w


def _knowledge(n_knowledge: int) -> list[ev.KnowledgeChanged]:
    """The knowledge base: ``n_knowledge`` policies cycling through the topics, so replies
    and queries built from a topic's words overlap the objects they cite."""
    out = []
    for i in range(n_knowledge):
        topic, words = TOPICS_WORDS[i % len(TOPICS_WORDS)]
        text = f"{topic.title()} policy {i}: {words} rule {i} applies, reference {i * 7}."
        out.append(
            ev.KnowledgeChanged(
                knowledge_id=_kid(i), op=ev.KnowledgeOp.UPSERT, title=topic, text=text
            )
        )
    return out


def _envelope(rng: random.Random, at: datetime) -> ev.Envelope:
    """An envelope whose id comes from the workload's rng: the same workload twice."""
    return ev.Envelope(
        event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
        event_time=at,
        producer="workload",
    )


def _serve(rng: random.Random, r: int, when: datetime, n_knowledge: int) -> _Request:
    """Request ``r``'s envelopes, knowledge picks, candidates and context, drawing the rng
    in a fixed order (suggestion envelope, annotation envelope, picks, interaction)."""
    case_id, request_id = f"case-{r // 2:06d}", f"req-{r:06d}"
    env = _envelope(rng, when)
    later = _envelope(rng, when + timedelta(seconds=30))
    picks = rng.sample(range(n_knowledge), 12)
    # both candidates cite an object of the query's topic: the agents' labels then agree
    # with one truth (an object is relevant to the queries of its topic), as a real crew's
    # do, and the judge's agreement with the other agents has a consensus to measure
    topic_of = picks[0] % len(TOPICS_WORDS)
    same = [k for k in range(topic_of, n_knowledge, len(TOPICS_WORDS)) if k not in picks]
    if same:
        picks[1] = rng.choice(same)
    topic, words = TOPICS_WORDS[picks[0] % len(TOPICS_WORDS)]
    a_text = f"For your {topic} question: {words.split()[0]} applies [{_kid(picks[0])}]."
    b_text = f"Please check the {words.split()[-1]} terms of the agreement [{_kid(picks[1])}]."
    interaction: list[ev.Event] = []
    if r % 2 == 0:
        interaction.append(
            ev.CustomerInteraction(
                envelope=_envelope(rng, when),
                case_id=case_id,
                channel=ev.Channel.CHAT,
                customer_message=f"Question about {topic}, reach me at user{r}@example.com",
            )
        )
    suggestion = ev.SuggestionServed(
        envelope=env,
        request_id=request_id,
        case_id=case_id,
        query=f"{topic} {words}",
        retrieved=_scored(picks[:10], 20),
        ranked=_scored(picks[:8], 10),
        candidates=[
            _candidate("A", a_text, picks[0]),
            _candidate("B", b_text, picks[1]),
        ],
    )
    return _Request(case_id, request_id, later, picks, a_text, b_text, interaction, suggestion)


def _scored(picks: list[int], scale: int) -> list[ev.ScoredKnowledge]:
    """Knowledge in pick order with falling scores ``1 - j / scale``."""
    return [
        ev.ScoredKnowledge(knowledge_id=_kid(k), score=1 - j / scale) for j, k in enumerate(picks)
    ]


def _candidate(candidate_id: str, text: str, cited: int) -> ev.Candidate:
    """A candidate reply citing one knowledge object (the Virtual Judge checks citations)."""
    return ev.Candidate(
        candidate_id=candidate_id,
        text=text,
        model_version="g1",
        cited_knowledge_ids=[_kid(cited)],
    )


def _orphan(req: _Request) -> ev.PairwisePreference:
    """An annotation whose suggestion is never published: it must end up unmatched."""
    return ev.PairwisePreference(
        envelope=req.later,
        request_id=req.request_id,
        case_id=req.case_id,
        agent_id="agent-0",
        preferred=ev.Preference.A,
    )


def _draw(rng: random.Random, n_agents: int, bad_share: float) -> _Draw:
    """Agent, chosen candidate and the annotation made wrong, in the seeded draw order."""
    agent = f"agent-{rng.randrange(n_agents)}"
    chosen = rng.choice("AB")
    bad = rng.choice(list(_KINDS)) if rng.random() < bad_share else ""
    return _Draw(agent, chosen, bad)


def _annotations(req: _Request, draw: _Draw) -> list[ev.Event]:
    """Adoption, preference, relevance and missing knowledge for a request, each correct
    unless it is ``draw.bad``: then wrong in the one way its Virtual Judge rule catches."""
    chosen, bad = draw.chosen, draw.bad
    picks, later = req.picks, req.later
    other = "B" if chosen == "A" else "A"
    other_i = picks[1] if chosen == "A" else picks[0]
    chosen_kid, other_kid = _kid(picks[0] if chosen == "A" else picks[1]), _kid(other_i)
    chosen_text = req.a_text if chosen == "A" else req.b_text
    common: dict[str, Any] = {
        "envelope": later,
        "request_id": req.request_id,
        "case_id": req.case_id,
        "agent_id": draw.agent,
    }
    adoption = ev.AdoptionDecision(
        **common,
        decision=ev.Adoption.EDITED,
        candidate_id=chosen,
        final_text=chosen_text + " Anything else I can help with today?",
        rationale_text="ok" if bad == "adoption" else "Correct policy, added a closing line.",
        rationale_category=ev.RationaleCategory.ACCURATE,
    )
    preference = ev.PairwisePreference(
        **_unseeded(common, later),
        preferred=ev.Preference(other if bad == "preference" else chosen),
    )
    n_topics = len(TOPICS_WORDS)
    off_topic = [k for k in picks[2:8] if k % n_topics != picks[0] % n_topics][:1]
    relevance = ev.KnowledgeRelevance(
        **_unseeded(common, later),
        labels=[
            ev.RelevanceLabel(
                knowledge_id=chosen_kid,
                label=ev.Relevance.IRRELEVANT if bad == "relevance" else ev.Relevance.RELEVANT,
            ),
            ev.RelevanceLabel(
                knowledge_id=other_kid,
                label=ev.Relevance.RELEVANT
                if other_i % n_topics == picks[0] % n_topics
                else ev.Relevance.IRRELEVANT,
            ),
            *(
                ev.RelevanceLabel(knowledge_id=_kid(k), label=ev.Relevance.IRRELEVANT)
                for k in off_topic
            ),
        ],
    )
    missing = ev.MissingKnowledge(
        **_unseeded(common, later),
        items=[ev.MissingItem(knowledge_id=_kid(picks[5] if bad == "missing" else picks[10]))],
        timing=ev.AnnotationTiming.IMMEDIATE,
        looked_up_at=later.event_time,
        annotated_at=later.event_time + timedelta(seconds=20),
    )
    return [adoption, preference, relevance, missing]


def _unseeded(common: dict[str, Any], later: ev.Envelope) -> dict[str, Any]:
    """``common`` with a fresh envelope at ``later``'s time (a random, unseeded event id)."""
    return common | {"envelope": ev.Envelope(event_time=later.event_time, producer="workload")}


def garbage(n: int, seed: int = 1) -> list[bytes]:
    """Undecodable message values: random bytes, truncated Avro, wrong magic."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            out.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60))))
        elif kind == 1:
            out.append(b"\xc3\x01" + bytes(8) + b"truncated")
        else:
            out.append(b'{"json": "not avro"}')
    return out
