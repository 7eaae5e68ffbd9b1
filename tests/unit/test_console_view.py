"""The console's fold of the topics, and who may call its API (no broker, no browser)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

import kernel.events as ev
from aitl.console import create_console_app
from aitl.console.view import Folded
from kernel.envelope import Envelope
from kernel.settings import KafkaSettings, Settings
from tests.factories import samples

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def at(event: Any, seconds: float) -> Any:
    return event.model_copy(
        update={"envelope": Envelope(event_time=T0 + timedelta(seconds=seconds))}
    )


def lifecycle(version: str, action: ev.LifecycleAction, seconds: float, **kw: Any) -> Any:
    event = ev.ModelLifecycle(
        component=ev.Component.RANKER,
        version=version,
        action=action,
        artifact_uri=f"file:///{version}",
        **kw,
    )
    return at(event, seconds)


def test_a_case_shows_the_conversation_the_candidates_and_the_knowledge() -> None:
    folded = Folded()
    s = samples()
    folded.add(ev.KnowledgeChanged(knowledge_id="kb-1", op="UPSERT", title="Roaming", text="…"))
    for name in ("interaction", "suggestion"):
        folded.add(s[name])
    case = folded.case("req-1")
    assert case is not None
    assert [t["speaker"] for t in case["conversation"]] == ["AGENT", "CUSTOMER"]
    assert case["conversation"][-1]["text"] == "My bill doubled this month, why?"
    assert [c["candidate_id"] for c in case["candidates"]] == ["A", "B"]
    shown = {k["knowledge_id"]: k["known"] for k in case["knowledge"]}
    assert shown == {"kb-0": False, "kb-1": True, "kb-2": False}
    assert folded.case("req-unknown") is None


def test_search_ranks_title_matches_first_and_forgets_retired_objects() -> None:
    folded = Folded()
    folded.add(ev.KnowledgeChanged(knowledge_id="k1", op="UPSERT", title="Fees", text="roaming"))
    folded.add(
        ev.KnowledgeChanged(knowledge_id="k2", op="UPSERT", title="Roaming abroad", text="rates")
    )
    folded.add(ev.KnowledgeChanged(knowledge_id="k3", op="UPSERT", title="eSIM", text="qr code"))
    assert [r["knowledge_id"] for r in folded.search("roaming")] == ["k2", "k1"]
    folded.add(ev.KnowledgeChanged(knowledge_id="k2", op="RETIRE"))
    assert [r["knowledge_id"] for r in folded.search("roaming")] == ["k1"]
    assert folded.search("the a of") == []  # no content words, no results


def test_the_queue_holds_an_agents_sent_but_unannotated_cases() -> None:
    folded = Folded()
    s = samples()
    folded.add(s["adoption"])  # agent-7 sent req-1
    other = s["adoption"].model_copy(update={"request_id": "req-2", "agent_id": "agent-8"})
    folded.add(other)
    assert folded.queue("agent-7") == [
        {
            "request_id": "req-1",
            "sent_at": s["adoption"].envelope.event_time.isoformat(),
            "missing": ["preference", "relevance"],
        }
    ]
    folded.add(s["preference"])
    folded.add(s["relevance"])
    assert folded.queue("agent-7") == []
    assert [c["request_id"] for c in folded.queue("agent-8")] == ["req-2"]


def test_the_flywheel_folds_models_verdicts_and_capture_latency() -> None:
    folded = Folded()
    s = samples()
    folded.add(at(s["suggestion"], 0))
    folded.add(at(s["preference"], 30))
    folded.add(at(s["adoption"], 90))
    reg = ev.LifecycleAction.REGISTERED
    folded.add(lifecycle("rk-1", reg, 1, metrics={"precision@8": 0.2}))
    folded.add(lifecycle("rk-2", reg, 2, metrics={"precision@8": 0.3}))
    folded.add(lifecycle("rk-1", ev.LifecycleAction.PROMOTED, 3))
    folded.add(lifecycle("rk-2", ev.LifecycleAction.PROMOTED, 4, previous_version="rk-1"))
    folded.add(lifecycle("rk-2", ev.LifecycleAction.ROLLED_BACK, 5, previous_version="rk-1"))
    verdict = s["judge-verdict"]
    for i, agent in enumerate(["p-1", "p-1", "p-2"]):
        accepted = i == 2
        folded.add(
            at(
                verdict.model_copy(
                    update={
                        "agent_pseudonym": agent,
                        "accepted": accepted,
                        "reasons": [] if accepted else ["preference_mismatch:B"],
                    }
                ),
                10 + i,
            )
        )
    out = folded.flywheel()
    (ranker,) = out["components"]
    assert (ranker["component"], ranker["serving"]) == ("ranker", "rk-1")
    assert [e["action"] for e in ranker["events"]] == [
        "REGISTERED",
        "REGISTERED",
        "PROMOTED",
        "PROMOTED",
        "ROLLED_BACK",
    ]
    assert {v["version"]: v["metrics"] for v in ranker["versions"]}["rk-2"] == {"precision@8": 0.3}
    by_reason = out["verdicts"]["by_reason"]
    assert (sum(by_reason["preference_mismatch"]), sum(by_reason["accepted"])) == (2, 1)
    assert sum(out["annotations"]["by_type"]["preference"]) == 1
    latencies = [v for v in out["annotations"]["latency_p90_s"] if v is not None]
    assert latencies == [30.0, 90.0]  # one-minute buckets: the preference, then the adoption
    agents = {a["agent"]: a for a in out["agents"]}
    assert agents["p-1"]["accepted_share"] == 0.0
    assert agents["p-1"]["top_reasons"] == ["preference_mismatch"]
    assert agents["p-2"]["accepted_share"] == 1.0


def test_the_api_wants_a_token_and_only_the_models_role_may_promote() -> None:
    settings = Settings(
        kafka=KafkaSettings(bootstrap="127.0.0.1:1"),
        api_tokens="agent",
        models_admin_tokens="lead",
    )
    client = TestClient(create_console_app(settings))  # no lifespan: no broker needed
    assert client.get("/console").status_code == 200
    assert client.get("/console/static/outbox.js").status_code == 200
    assert client.get("/console/api/flywheel").status_code == 401
    agent = {"Authorization": "Bearer agent"}
    lead = {"Authorization": "Bearer lead"}
    assert client.get("/console/api/flywheel", headers=agent).json()["can_manage"] is False
    assert client.get("/console/api/flywheel", headers=lead).json()["can_manage"] is True
    refused = client.post("/console/api/models/ranker/rollback", json={}, headers=agent)
    assert refused.status_code == 403
    unknown = client.post("/console/api/models/nope/rollback", json={}, headers=lead)
    assert unknown.status_code == 404
    assert client.get("/console/api/cases/r-1", headers=agent).status_code == 404


def test_the_flywheel_page_signs_its_lifecycle_events_with_the_key() -> None:
    """Where AITL_LIFECYCLE_KEY is set serving ignores unsigned events as forged: the
    page's promotions and rollbacks must be signed like the trainers'."""
    from aitl.console import console_registry
    from kernel.events import Component
    from kernel.lifecycle import verify
    from trainers.registry import MemoryLifecycleLog

    settings = Settings(kafka=KafkaSettings(bootstrap="127.0.0.1:1"), lifecycle_key="k" * 32)
    log = MemoryLifecycleLog()
    registry = console_registry(settings, log)
    registry.register(Component.GENERATOR, "g1", "file:///ckpt/g1", artifact_sha256="cd" * 32)
    registry.promote(Component.GENERATOR, "g1")
    key = settings.lifecycle_key_bytes()
    assert log.read() and all(e.signature and verify(e, key) for e in log.read())
