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
    for i in range(n_knowledge):
        topic, words = TOPICS_WORDS[i % len(TOPICS_WORDS)]
        text = f"{topic.title()} policy {i}: {words} rule {i} applies, reference {i * 7}."
        w.knowledge.append(
            ev.KnowledgeChanged(
                knowledge_id=_kid(i), op=ev.KnowledgeOp.UPSERT, title=topic, text=text
            )
        )
    n_requests = max(1, n_annotations // 4)
    step = span / n_requests
    late: list[tuple[int, list[ev.Event]]] = []  # (publish after index, events)
    for r in range(n_requests):
        case_id, request_id = f"case-{r // 2:06d}", f"req-{r:06d}"
        when = T0 + step * r

        def envelope(at: datetime) -> ev.Envelope:  # seeded ids: the same workload twice
            return ev.Envelope(
                event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                event_time=at,
                producer="workload",
            )

        env = envelope(when)
        later = envelope(when + timedelta(seconds=30))
        picks = rng.sample(range(n_knowledge), 12)
        retrieved, missing_kid = picks[:10], picks[10]
        topic, words = TOPICS_WORDS[picks[0] % len(TOPICS_WORDS)]
        a_text = f"For your {topic} question: {words.split()[0]} applies [{_kid(picks[0])}]."
        b_text = f"Please check the {words.split()[-1]} terms of the agreement [{_kid(picks[1])}]."
        context: list[ev.Event] = []
        if r % 2 == 0:
            context.append(
                ev.CustomerInteraction(
                    envelope=envelope(when),
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
            retrieved=[
                ev.ScoredKnowledge(knowledge_id=_kid(k), score=1 - j / 20)
                for j, k in enumerate(retrieved)
            ],
            ranked=[
                ev.ScoredKnowledge(knowledge_id=_kid(k), score=1 - j / 10)
                for j, k in enumerate(retrieved[:8])
            ],
            candidates=[
                ev.Candidate(
                    candidate_id="A",
                    text=a_text,
                    model_version="g1",
                    cited_knowledge_ids=[_kid(picks[0])],
                ),
                ev.Candidate(
                    candidate_id="B",
                    text=b_text,
                    model_version="g1",
                    cited_knowledge_ids=[_kid(picks[1])],
                ),
            ],
        )
        if rng.random() < orphan_share:
            orphan = ev.PairwisePreference(
                envelope=later,
                request_id=request_id,
                case_id=case_id,
                agent_id="agent-0",
                preferred=ev.Preference.A,
            )
            w.orphans.append(orphan)
            w.stream += [*context, orphan]
            continue
        context.append(suggestion)
        agent = f"agent-{rng.randrange(n_agents)}"
        chosen = rng.choice("AB")
        other = "B" if chosen == "A" else "A"
        chosen_kid = _kid(picks[0] if chosen == "A" else picks[1])
        other_kid = _kid(picks[1] if chosen == "A" else picks[0])
        chosen_text = a_text if chosen == "A" else b_text
        common: dict[str, Any] = {
            "envelope": later,
            "request_id": request_id,
            "case_id": case_id,
            "agent_id": agent,
        }
        bad = (
            rng.choice(["adoption", "preference", "relevance", "missing"])
            if rng.random() < bad_share
            else ""
        )
        adoption = ev.AdoptionDecision(
            **common,
            decision=ev.Adoption.EDITED,
            candidate_id=chosen,
            final_text=chosen_text + " Anything else I can help with today?",
            rationale_text="ok" if bad == "adoption" else "Correct policy, added a closing line.",
            rationale_category=ev.RationaleCategory.ACCURATE,
        )
        preference = ev.PairwisePreference(
            **(
                common | {"envelope": ev.Envelope(event_time=later.event_time, producer="workload")}
            ),
            preferred=ev.Preference(other if bad == "preference" else chosen),
        )
        relevance = ev.KnowledgeRelevance(
            **(
                common | {"envelope": ev.Envelope(event_time=later.event_time, producer="workload")}
            ),
            labels=[
                ev.RelevanceLabel(
                    knowledge_id=chosen_kid,
                    label=ev.Relevance.IRRELEVANT if bad == "relevance" else ev.Relevance.RELEVANT,
                ),
                ev.RelevanceLabel(knowledge_id=other_kid, label=ev.Relevance.IRRELEVANT),
            ],
        )
        missing = ev.MissingKnowledge(
            **(
                common | {"envelope": ev.Envelope(event_time=later.event_time, producer="workload")}
            ),
            items=[
                ev.MissingItem(knowledge_id=_kid(retrieved[5] if bad == "missing" else missing_kid))
            ],
            timing=ev.AnnotationTiming.IMMEDIATE,
            looked_up_at=later.event_time,
            annotated_at=later.event_time + timedelta(seconds=20),
        )
        anns: list[ev.Event] = [adoption, preference, relevance, missing]
        for name, a in zip(("adoption", "preference", "relevance", "missing"), anns, strict=True):
            w.expected[a.envelope.event_id] = name != bad
        w.annotations += anns
        if rng.random() < late_share:  # the annotations overtake their context
            w.late_context.add(request_id)
            w.stream += anns
            late.append((len(w.stream) + rng.randrange(5, 60), context))
        else:
            w.stream += [*context, *anns]
    for at, context in sorted(late, key=lambda x: x[0], reverse=True):
        w.stream[at:at] = context
    return w


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
