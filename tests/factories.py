"""Valid sample events of every type, shared by unit and integration tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from kernel import events as ev

T0 = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)


def samples(case_id: str = "case-1", request_id: str = "req-1") -> dict[str, ev.Event]:
    """One valid event per event type, all about the same case."""
    return {
        "interaction": ev.CustomerInteraction(
            case_id=case_id,
            channel=ev.Channel.CHAT,
            customer_message="My bill doubled this month, why?",
            history=[ev.Turn(speaker=ev.Speaker.AGENT, text="Hi! How can I help?")],
        ),
        "suggestion": ev.SuggestionServed(
            request_id=request_id,
            case_id=case_id,
            query="bill doubled",
            retrieved=[
                ev.ScoredKnowledge(knowledge_id=f"kb-{i}", score=1.0 - i / 100) for i in range(10)
            ],
            ranked=[ev.ScoredKnowledge(knowledge_id=f"kb-{i}", score=0.9) for i in range(3)],
            candidates=[
                ev.Candidate(
                    candidate_id="A",
                    text="Roaming charges [kb-1].",
                    model_version="gen-1",
                    cited_knowledge_ids=["kb-1"],
                ),
                ev.Candidate(
                    candidate_id="B",
                    text="Late fee [kb-2].",
                    model_version="gen-1",
                    cited_knowledge_ids=["kb-2"],
                ),
            ],
            model_versions={"retriever": "r-1", "ranker": "k-1", "generator": "gen-1"},
            latency_ms=42.5,
        ),
        "preference": ev.PairwisePreference(
            request_id=request_id, case_id=case_id, agent_id="agent-7", preferred=ev.Preference.A
        ),
        "adoption": ev.AdoptionDecision(
            request_id=request_id,
            case_id=case_id,
            agent_id="agent-7",
            decision=ev.Adoption.EDITED,
            candidate_id="A",
            final_text="Your bill includes roaming charges from your trip.",
            rationale_text="Right answer, needed the trip dates.",
            rationale_category=ev.RationaleCategory.INCOMPLETE,
        ),
        "relevance": ev.KnowledgeRelevance(
            request_id=request_id,
            case_id=case_id,
            agent_id="agent-7",
            labels=[
                ev.RelevanceLabel(knowledge_id="kb-1", label=ev.Relevance.RELEVANT),
                ev.RelevanceLabel(knowledge_id="kb-2", label=ev.Relevance.IRRELEVANT),
            ],
        ),
        "missing-knowledge": ev.MissingKnowledge(
            request_id=request_id,
            case_id=case_id,
            agent_id="agent-7",
            items=[
                ev.MissingItem(
                    text="Roaming day pass costs 5 EUR/day", url="https://kb.example/roam"
                )
            ],
            timing=ev.AnnotationTiming.IMMEDIATE,
            looked_up_at=T0,
            annotated_at=T0 + timedelta(seconds=40),
        ),
        "judge-verdict": ev.JudgeVerdict(
            annotation_event_id=uuid.UUID("6f1c2a4e-0c1b-4a57-9d3e-3a1f2b0c9d8e"),
            annotation_type="PREFERENCE",
            request_id=request_id,
            case_id=case_id,
            agent_pseudonym="p-1a2b",
            judge_name="rule",
            judge_version="1",
            accepted=False,
            weight=0.5,
            scores={"consistency": 0.2},
            reasons=["preference_mismatch"],
        ),
        "knowledge": ev.KnowledgeChanged(
            knowledge_id="kb-1",
            op=ev.KnowledgeOp.UPSERT,
            kind=ev.KnowledgeKind.FAQ,
            title="Roaming",
            text="Roaming costs 5 EUR/day in the EU.",
        ),
        "shard-sealed": ev.ShardSealed(
            shard_id="retriever-train-0001",
            component=ev.Component.RETRIEVER,
            split=ev.Split.TRAIN,
            uri="file:///tmp/s.parquet",
            manifest_uri="file:///tmp/s.json",
            rows=120,
            min_event_time=T0,
            max_event_time=T0 + timedelta(hours=1),
            judge_version="rule-1",
            source_offsets=[
                ev.OffsetRange(topic="t", partition=0, first_offset=0, last_offset=119)
            ],
        ),
        "model": ev.ModelLifecycle(
            component=ev.Component.RETRIEVER,
            version="r-2",
            action=ev.LifecycleAction.PROMOTED,
            artifact_uri="file:///ckpt/r-2",
            metrics={"recall_at_75": 0.8},
            previous_version="r-1",
        ),
    }


def as_json(event: ev.Event) -> dict[str, Any]:
    """The event as a gateway client would send it (JSON, no envelope)."""
    return event.model_dump(mode="json", exclude={"envelope"})
