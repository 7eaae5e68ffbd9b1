"""RuleJudge: every rule with an annotation it accepts and one it rejects (or down-weights)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from kernel import events as ev
from kernel.annotations.missing_knowledge import DEFERRED_WEIGHT
from kernel.text import is_boilerplate
from processors.judge import IntegrityJudge, JudgeInput, RuleJudge
from processors.judge.base import reason_code
from processors.judge.fatigue import FatigueTracker
from tests.factories import T0, samples

S = samples()
SUGG: ev.SuggestionServed = S["suggestion"]  # type: ignore[assignment]
KB = {f"kb-{i}": f"Knowledge object {i} about topic{i} details" for i in range(10)}
KB["kb-1"] = "Roaming charges apply outside the EU and are billed on the next invoice."
KB["kb-2"] = "A late fee of 10 EUR is added when an invoice is paid after its due date."


def adoption(**kw: Any) -> ev.AdoptionDecision:
    base = S["adoption"].model_dump()
    base.update(kw)
    return ev.AdoptionDecision.model_validate(base)


def ann(name: str, **kw: Any) -> Any:
    event = S[name]
    return type(event).model_validate(event.model_dump() | kw)


def judge(annotation: Any, adopted: ev.AdoptionDecision | None = None, **kw: Any) -> Any:
    inp = JudgeInput(annotation, SUGG, "agent-x", adoption=adopted, knowledge=KB, **kw)
    return RuleJudge().evaluate(inp)


def codes(verdict: Any) -> set[str]:
    return {reason_code(r) for r in verdict.reasons}


# -- required fields -------------------------------------------------------------------
def test_complete_adoption_is_accepted() -> None:
    v = judge(S["adoption"])
    assert v.accepted and v.weight == 1.0 and v.judge_name == "rule"


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("adoption", {"final_text": "   "}),
        (
            "relevance",
            {
                "labels": [
                    {"knowledge_id": "kb-1", "label": "RELEVANT"},
                    {"knowledge_id": "kb-1", "label": "IRRELEVANT"},
                ]
            },
        ),
        ("missing-knowledge", {"annotated_at": T0 - timedelta(seconds=5)}),
    ],
)
def test_missing_or_inconsistent_fields_reject(name: str, change: dict[str, Any]) -> None:
    v = judge(ann(name, **change), S["adoption"])
    assert not v.accepted
    assert "missing_fields" in codes(v)


# -- refers to a known suggestion ------------------------------------------------------
def test_annotation_of_another_case_is_rejected() -> None:
    v = judge(ann("preference", case_id="case-other"), S["adoption"])
    assert not v.accepted and "case_mismatch" in codes(v)


def test_unknown_candidate_is_rejected() -> None:
    v = judge(adoption(candidate_id="C"))
    assert not v.accepted and "unknown_candidate" in codes(v)


def test_relevance_label_for_knowledge_not_shown_is_rejected() -> None:
    labels = [{"knowledge_id": "kb-99", "label": "RELEVANT"}]
    v = judge(ann("relevance", labels=labels), S["adoption"])
    assert not v.accepted and "unknown_knowledge" in codes(v)
    shown = judge(S["relevance"], S["adoption"])
    assert shown.accepted, shown.reasons


# -- preference vs the reply actually sent ---------------------------------------------
def test_preference_matching_the_sent_reply_is_accepted() -> None:
    v = judge(S["preference"], S["adoption"])  # preferred A, sent an edit of A
    assert v.accepted and v.scores["consistency"] > 0.5


def test_preference_for_a_but_sent_b_is_rejected() -> None:
    sent_b = adoption(decision="AS_IS", candidate_id="B", final_text="Late fee [kb-2].")
    v = judge(S["preference"], sent_b)
    assert not v.accepted and "preference_mismatch" in codes(v)


def test_preference_for_a_but_own_reply_closer_to_b_is_rejected() -> None:
    own = adoption(
        decision="REJECTED",
        candidate_id=None,
        final_text="There is a late fee on your bill because it was paid late.",
    )
    v = judge(S["preference"], own)
    assert not v.accepted and "preference_mismatch" in codes(v)


def test_preference_without_adoption_is_judged_and_says_so() -> None:
    v = judge(S["preference"], None)
    assert v.accepted
    assert "adoption_missing" in codes(v)


# -- relevance labels vs the reply actually sent ---------------------------------------
def test_relevance_consistent_with_the_sent_reply_is_accepted() -> None:
    v = judge(S["relevance"], S["adoption"])  # kb-1 relevant, kb-2 irrelevant, sent A (kb-1)
    assert v.accepted and v.scores["relevance_consistency"] == 1.0


def test_knowledge_cited_by_the_sent_reply_but_labelled_irrelevant_is_rejected() -> None:
    labels = [{"knowledge_id": "kb-1", "label": "IRRELEVANT"}]
    sent_a = adoption(decision="AS_IS", candidate_id="A", final_text="Roaming charges [kb-1].")
    v = judge(ann("relevance", labels=labels), sent_a)
    assert not v.accepted and "relevance_contradicts_reply" in codes(v)


def test_knowledge_copied_into_an_edited_reply_but_labelled_irrelevant_is_rejected() -> None:
    labels = [{"knowledge_id": "kb-2", "label": "IRRELEVANT"}]
    edited = adoption(
        final_text="Hello! A late fee of 10 EUR was added: invoice paid after due date."
    )
    v = judge(ann("relevance", labels=labels), edited)
    assert not v.accepted and "relevance_contradicts_reply" in codes(v)


# -- missing knowledge that was in fact shown ------------------------------------------
def test_missing_knowledge_not_retrieved_is_accepted() -> None:
    v = judge(S["missing-knowledge"])
    assert v.accepted, v.reasons


def test_missing_knowledge_retrieved_but_not_shown_is_accepted() -> None:
    # kb-7 was retrieved (top 10) but not ranked into the 3 the agent saw: a ranker miss
    v = judge(ann("missing-knowledge", items=[{"knowledge_id": "kb-7"}]))
    assert v.accepted, v.reasons


def test_missing_knowledge_id_among_the_shown_is_rejected() -> None:
    v = judge(ann("missing-knowledge", items=[{"knowledge_id": "kb-2"}]))
    assert not v.accepted and "missing_was_shown" in codes(v)


def test_missing_knowledge_text_matching_a_shown_object_is_rejected() -> None:
    items = [{"text": "roaming charges apply outside the EU, billed on the next invoice"}]
    v = judge(ann("missing-knowledge", items=items))
    assert not v.accepted and "missing_was_shown" in codes(v)


# -- rationale -------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", "ok", "N/A", "good good good", "...", "lgtm"])
def test_empty_or_boilerplate_rationale_is_rejected(text: str) -> None:
    v = judge(adoption(rationale_text=text))
    assert not v.accepted and "boilerplate_rationale" in codes(v)


@pytest.mark.parametrize("text", ["Accurate", "Right answer, needed the trip dates."])
def test_a_real_rationale_passes(text: str) -> None:
    assert not is_boilerplate(text)
    assert judge(adoption(rationale_text=text)).accepted


# -- deferred missing knowledge --------------------------------------------------------
def test_deferred_missing_knowledge_is_kept_with_a_lower_weight() -> None:
    deferred = ann("missing-knowledge", timing="DEFERRED", annotated_at=T0 + timedelta(hours=3))
    v = judge(deferred)
    assert v.accepted and "deferred_annotation" in codes(v)
    assert v.weight == pytest.approx(DEFERRED_WEIGHT, abs=1e-3)
    assert judge(S["missing-knowledge"]).weight == 1.0


def test_immediate_but_late_missing_knowledge_counts_as_deferred() -> None:
    late = ann("missing-knowledge", annotated_at=T0 + timedelta(hours=2))
    assert "deferred_annotation" in codes(judge(late))


# -- fatigue ---------------------------------------------------------------------------
def test_a_long_run_of_default_choices_lowers_the_weight_but_keeps_the_annotation() -> None:
    rj = RuleJudge()
    weights = []
    for i in range(10):
        pref = ann("preference", preferred="A")
        pref = pref.model_copy(
            update={
                "envelope": pref.envelope.model_copy(
                    update={"event_time": T0 + timedelta(minutes=i)}
                )
            }
        )
        v = rj.evaluate(JudgeInput(pref, SUGG, "agent-tired", adoption=S["adoption"], knowledge=KB))
        assert v.accepted
        weights.append(v.weight)
    assert weights[:7] == [1.0] * 7
    assert weights[7:] == [0.5] * 3  # run of 8 or more
    b = ann("preference", preferred="B")
    v = rj.evaluate(JudgeInput(b, SUGG, "agent-tired", knowledge=KB))
    assert "fatigue_default_run" not in codes(v)


def test_a_sudden_volume_drop_lowers_the_weight() -> None:
    tracker = FatigueTracker()
    start = T0.replace(minute=0, second=0) - timedelta(hours=6)
    for hour in range(6):
        for i in range(30):
            t = start + timedelta(hours=hour, minutes=2 * i)
            assert not tracker.observe("a", S["relevance"].default_choice(), t).volume_drop
    late_in_hour = start + timedelta(hours=6, minutes=50)
    signal = tracker.observe("a", S["relevance"].default_choice(), late_in_hour)
    assert signal.volume_drop and signal.weight == pytest.approx(0.7)
    assert "fatigue_volume_drop" in signal.reasons


# -- no judge (the ablation) -----------------------------------------------------------
def test_integrity_judge_accepts_what_the_rule_judge_rejects_on_quality() -> None:
    sent_b = adoption(decision="AS_IS", candidate_id="B", final_text="Late fee [kb-2].")
    inp = JudgeInput(S["preference"], SUGG, "agent-x", adoption=sent_b, knowledge=KB)
    assert not RuleJudge().evaluate(inp).accepted
    v = IntegrityJudge().evaluate(inp)
    assert v.accepted and v.weight == 1.0 and v.judge_name == "none"


def test_integrity_judge_still_rejects_what_cannot_become_an_example() -> None:
    other = ann("adoption", case_id="case-elsewhere")
    v = IntegrityJudge().evaluate(JudgeInput(other, SUGG, "agent-x", knowledge=KB))
    assert not v.accepted and "case_mismatch" in codes(v)


# -- the agent's record ----------------------------------------------------------------
def test_an_agent_whose_annotations_keep_failing_loses_its_record_then_earns_it_back() -> None:
    rj = RuleJudge(fatigue=None)
    careless = adoption(rationale_text="ok")
    for _ in range(8):  # eight boilerplate rationales: rejected by the rule itself
        v = rj.evaluate(JudgeInput(careless, SUGG, "agent-c", knowledge=KB))
        assert codes(v) >= {"boilerplate_rationale"}
    # a relevance annotation nothing can fault on its own: rejected on the agent's record
    rel = JudgeInput(S["relevance"], SUGG, "agent-c", adoption=S["adoption"], knowledge=KB)
    v = rj.evaluate(rel)
    assert not v.accepted and codes(v) == {"unreliable_agent"}
    assert v.scores["agent_reject_rate"] == pytest.approx(8 / 12, abs=1e-4)  # 4 clean prior
    # the same annotation from an agent with a clean record is accepted at full weight
    v = rj.evaluate(
        JudgeInput(S["relevance"], SUGG, "agent-ok", adoption=S["adoption"], knowledge=KB)
    )
    assert v.accepted and v.weight == 1.0
    # sound annotations from agent-c go on its record; within a window it is back
    accepted_at = None
    for i in range(40):
        if rj.evaluate(rel).accepted:
            accepted_at = i
            break
    assert accepted_at is not None and accepted_at >= 15  # 8 / (n + 4) <= 0.25 at n = 28
    v = rj.evaluate(rel)
    assert v.accepted and v.weight == pytest.approx(1 - 8 / (29 + 4), abs=1e-3)


def test_the_record_needs_a_few_annotations_before_it_rejects() -> None:
    rj = RuleJudge(fatigue=None)
    rj.evaluate(JudgeInput(adoption(rationale_text="ok"), SUGG, "agent-new", knowledge=KB))
    rel = JudgeInput(S["relevance"], SUGG, "agent-new", adoption=S["adoption"], knowledge=KB)
    v = rj.evaluate(rel)  # one rejection of one: too little to go on; the weight says it
    assert v.accepted and "unreliable_agent" not in codes(v)
    assert v.weight == pytest.approx(1 - 1 / 5)


def test_no_judge_keeps_no_record() -> None:
    ij = IntegrityJudge()
    for _ in range(20):
        ij.evaluate(JudgeInput(adoption(rationale_text="ok"), SUGG, "agent-c", knowledge=KB))
    v = ij.evaluate(
        JudgeInput(S["relevance"], SUGG, "agent-c", adoption=S["adoption"], knowledge=KB)
    )
    assert v.accepted and v.weight == 1.0
