"""Example builders: the rows each accepted annotation yields, in the shard row schemas."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest

from kernel import events as ev
from kernel.events import Component
from kernel.shards import ROW_SCHEMAS
from processors.examples import PromptShape, build_examples, build_prompt
from processors.judge import JudgeInput, Verdict
from tests.factories import samples

S = samples()
KB = {f"kb-{i}": f"Knowledge object {i}." for i in range(10)}
OK = Verdict(True, "rule", "rule-1", weight=0.8)


def rows_for(annotation: Any, adoption: Any = None, knowledge: dict[str, str] = KB) -> Any:
    inp = JudgeInput(
        annotation,
        S["suggestion"],  # type: ignore[arg-type]
        "agent-x",
        adoption=adoption,
        knowledge=knowledge,
        customer_message="My bill doubled this month, why?",
    )
    out = build_examples(
        inp, OK, history=[ev.Turn(speaker=ev.Speaker.AGENT, text="Hi! How can I help?")]
    )
    for component, rows in out.items():
        pa.Table.from_pylist(rows, schema=ROW_SCHEMAS[component])  # raises on a schema mismatch
    return out


def test_relevance_gives_retriever_pairs_with_hard_negatives_and_graded_ranker_rows() -> None:
    labels = [
        {"knowledge_id": "kb-1", "label": "RELEVANT"},
        {"knowledge_id": "kb-2", "label": "IRRELEVANT"},
        {"knowledge_id": "kb-3", "label": "PARTIAL"},
        {"knowledge_id": "kb-4", "label": "IRRELEVANT"},
    ]
    rel = S["relevance"].model_copy(update={"labels": [ev.RelevanceLabel(**x) for x in labels]})
    out = rows_for(rel, S["adoption"])
    (r,) = out[Component.RETRIEVER]
    assert (r["positive_id"], r["positive_text"]) == ("kb-1", "Knowledge object 1.")
    assert r["negative_ids"] == ["kb-2", "kb-4"] and r["query"] == "bill doubled"
    assert {x["knowledge_id"]: x["label"] for x in out[Component.RANKER]} == {
        "kb-1": 1.0,
        "kb-2": 0.0,
        "kb-3": 0.5,
        "kb-4": 0.0,
    }
    eid = str(rel.envelope.event_id)
    assert r["example_id"] == f"{eid}:retriever:kb-1" and r["weight"] == pytest.approx(0.8)
    assert r["source_event_ids"][0] == eid and Component.GENERATOR not in out


def test_missing_knowledge_gives_a_retriever_positive_and_a_ranker_positive() -> None:
    items = [ev.MissingItem(knowledge_id="kb-42"), ev.MissingItem(text="Day pass: 5 EUR/day")]
    miss = S["missing-knowledge"].model_copy(update={"items": items})
    out = rows_for(miss, knowledge=KB | {"kb-42": "Roaming day pass details."})
    positives = [(r["positive_id"], r["positive_text"]) for r in out[Component.RETRIEVER]]
    assert positives[0] == ("kb-42", "Roaming day pass details.")
    assert positives[1][0].startswith("text:") and positives[1][1] == "Day pass: 5 EUR/day"
    assert [(r["knowledge_id"], r["label"]) for r in out[Component.RANKER]] == [("kb-42", 1.0)]


@pytest.mark.parametrize(
    ("preferred", "chosen"), [("A", "Roaming charges [kb-1]."), ("B", "Late fee [kb-2].")]
)
def test_preference_gives_an_orpo_pair(preferred: str, chosen: str) -> None:
    pref = S["preference"].model_copy(update={"preferred": ev.Preference(preferred)})
    (row,) = rows_for(pref, S["adoption"])[Component.GENERATOR]
    assert row["chosen"] == chosen and row["rejected"] != chosen
    assert row["rationale"] == "Right answer, needed the trip dates."
    assert row["knowledge_ids"] == ["kb-0", "kb-1", "kb-2"]


def test_a_tie_gives_no_pair() -> None:
    tie = S["preference"].model_copy(update={"preferred": ev.Preference.TIE})
    assert rows_for(tie) == {}


def test_adoption_pairs() -> None:
    edited = rows_for(S["adoption"])[Component.GENERATOR]
    assert [(r["chosen"], r["rejected"]) for r in edited] == [
        ("Your bill includes roaming charges from your trip.", "Roaming charges [kb-1].")
    ]
    as_is = S["adoption"].model_copy(update={"decision": ev.Adoption.AS_IS, "final_text": "x"})
    assert rows_for(as_is)[Component.GENERATOR][0]["chosen"] == "Roaming charges [kb-1]."
    own = S["adoption"].model_copy(update={"decision": ev.Adoption.REJECTED, "candidate_id": None})
    pairs = rows_for(own)[Component.GENERATOR]
    assert [r["rejected"] for r in pairs] == ["Roaming charges [kb-1].", "Late fee [kb-2]."]
    assert len({r["example_id"] for r in pairs}) == 2


def test_the_prompt_shows_the_knowledge_and_the_conversation() -> None:
    (row,) = rows_for(S["adoption"])[Component.GENERATOR]
    messages = json.loads(row["prompt"])  # the serving generator's chat messages
    system = messages[0]
    assert system["role"] == "system"
    assert "[1] Knowledge object 0." in system["content"]
    assert "[3] Knowledge object 2." in system["content"]
    assert {"role": "assistant", "content": "Hi! How can I help?"} in messages
    assert messages[-1] == {"role": "user", "content": "My bill doubled this month, why?"}
    assert "(text unavailable)" in build_prompt("q", [("kb-9", None)])


def test_the_prompt_has_the_shape_serving_shows() -> None:
    from kernel.prompt import Snippet, build_messages

    long_kb = {k: v + " More detail." * 40 for k, v in KB.items()}
    inp = JudgeInput(
        S["adoption"],
        S["suggestion"],  # type: ignore[arg-type]
        "agent-x",
        knowledge=long_kb,
        customer_message="My bill doubled this month, why?",
    )
    shape = PromptShape(knowledge=2, chars=80)
    (row,) = build_examples(inp, OK, shape=shape)[Component.GENERATOR]
    shown = [k.knowledge_id for k in S["suggestion"].ranked[:2]]  # type: ignore[attr-defined]
    assert row["knowledge_ids"] == shown
    serving = build_messages(
        "My bill doubled this month, why?",
        [],
        [Snippet(k, long_kb[k]) for k in shown],
        "A",
        max_chars=80,
    )
    assert json.loads(row["prompt"]) == serving


def test_rejected_annotations_and_unknown_texts_give_no_rows() -> None:
    inp = JudgeInput(S["relevance"], S["suggestion"], "a", knowledge={})  # type: ignore[arg-type]
    assert build_examples(inp, Verdict(False, "rule", "rule-1")) == {}
    assert build_examples(inp, OK) == {}  # no knowledge text, nothing to train on
