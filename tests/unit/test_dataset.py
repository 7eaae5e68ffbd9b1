"""DSTC-format loading (both knowledge variants), the demo generator, and the shared hotel set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from serving.knowledge import DatasetError, generate_demo, load_dstc

HOTEL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dstc11-hotel"


def _write(path: Path, knowledge: Any, logs: Any, labels: Any) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, obj in (("knowledge.json", knowledge), ("logs.json", logs), ("labels.json", labels)):
        (path / name).write_text(json.dumps(obj), encoding="utf-8")
    return path


def _log(*texts: str) -> list[dict[str, str]]:
    """Turns alternating U, S, U, ... so the last one is the customer's."""
    speakers = ["U" if (len(texts) - i) % 2 else "S" for i in range(len(texts))]
    return [{"speaker": s, "text": t} for s, t in zip(speakers, texts, strict=True)]


DSTC9_KNOWLEDGE = {
    "hotel": {
        "11": {
            "name": "Acorn Guest House",
            "docs": {
                "0": {"title": "Is parking free?", "body": "Yes, parking is free."},
                "1": {"title": "Do you allow pets?", "body": "No pets are allowed."},
            },
        }
    },
    "taxi": {
        "*": {"docs": {"0": {"title": "Can I pay by card?", "body": "All taxis take cards."}}}
    },
}

DSTC11_KNOWLEDGE = {
    "hotel": {
        "3": {
            "name": "Bridge Inn",
            "faqs": {"0": {"question": "Is there wifi?", "answer": "Free wifi everywhere."}},
            "reviews": {
                "0": {
                    "traveler_type": "Couples",
                    "sentences": {"0": "Lovely quiet rooms.", "1": "Breakfast was cold."},
                }
            },
        }
    }
}


@pytest.fixture
def dstc9(tmp_path: Path) -> Path:
    logs = [
        _log("I need a guesthouse.", "Acorn Guest House is free.", "Can I park there?"),
        _log("Book a taxi please."),
        _log("hi", "Hello!", "Are pets ok at Acorn?", "Let me check.", "And cards in the taxi?"),
    ]
    labels = [
        {
            "target": True,
            "knowledge": [{"domain": "hotel", "entity_id": 11, "doc_id": 0}],
            "response": "Parking is free.",
        },
        {"target": False},
        {
            "target": True,
            "knowledge": [
                {"domain": "hotel", "entity_id": 11, "doc_id": 1},
                {"domain": "taxi", "entity_id": "*", "doc_id": 0},
            ],
            "response": "No pets, but taxis take cards.",
        },
    ]
    return _write(tmp_path / "d9", DSTC9_KNOWLEDGE, logs, labels)


@pytest.fixture
def dstc11(tmp_path: Path) -> Path:
    logs = [_log("Any wifi at Bridge Inn?"), _log("Is Bridge Inn quiet?", "Yes.", "Breakfast?")]
    labels = [
        {
            "target": True,
            "knowledge": [{"domain": "hotel", "entity_id": 3, "doc_type": "faq", "doc_id": 0}],
            "response": "Yes, free wifi.",
        },
        {
            "target": True,
            "knowledge": [
                {"domain": "hotel", "entity_id": 3, "doc_type": "review", "doc_id": 0, "sent_id": 1}
            ],
            "response": "One guest found breakfast cold.",
        },
    ]
    return _write(tmp_path / "d11", DSTC11_KNOWLEDGE, logs, labels)


def test_dstc9_docs_ids_texts_and_domain_wide_entity(dstc9: Path) -> None:
    ds = load_dstc(dstc9)
    kb = ds.by_id()
    assert list(kb) == ["hotel:11:doc:0", "hotel:11:doc:1", "taxi:*:doc:0"]
    parking = kb["hotel:11:doc:0"]
    assert parking.kind == "doc"
    assert parking.title == "Is parking free?"
    assert parking.text == "Acorn Guest House. Is parking free? Yes, parking is free."
    assert parking.entity == "Acorn Guest House"
    taxi = kb["taxi:*:doc:0"]
    assert taxi.entity is None
    assert taxi.text == "Can I pay by card? All taxis take cards."


def test_dstc9_cases_skip_non_targets_and_build_gold_and_query(dstc9: Path) -> None:
    ds = load_dstc(dstc9)
    assert ds.name == "d9"
    assert [c.case_id for c in ds.cases] == ["d9-00000", "d9-00002"]
    first, second = ds.cases
    assert first.gold_ids == ["hotel:11:doc:0"]
    assert first.reference == "Parking is free."
    assert first.query == "I need a guesthouse. Acorn Guest House is free. Can I park there?"
    assert second.index == 2
    assert second.gold_ids == ["hotel:11:doc:1", "taxi:*:doc:0"]
    assert second.query == "Are pets ok at Acorn? Let me check. And cards in the taxi?"
    assert second.history[0] == ("U", "hi")
    assert second.history[-1] == ("U", "And cards in the taxi?")
    assert len(second.history) == 5


def test_query_turns_and_separator(dstc9: Path) -> None:
    ds = load_dstc(dstc9, query_turns=1)
    assert ds.cases[1].query == "And cards in the taxi?"
    ds = load_dstc(dstc9, query_turns=2, turn_sep="\n")
    assert ds.cases[1].query == "Let me check.\nAnd cards in the taxi?"
    with pytest.raises(ValueError, match="query_turns"):
        load_dstc(dstc9, query_turns=0)


def test_domain_filter_drops_knowledge_and_cases_outside_it(dstc9: Path) -> None:
    ds = load_dstc(dstc9, domains={"hotel"})
    assert {o.id.split(":")[0] for o in ds.knowledge} == {"hotel"}
    # The second case also needs taxi knowledge, so it goes with the taxi domain.
    assert [c.index for c in ds.cases] == [0]


def test_dstc11_faq_and_review_objects(dstc11: Path) -> None:
    ds = load_dstc(dstc11, name="hotels")
    kb = ds.by_id()
    assert list(kb) == ["hotel:3:faq:0", "hotel:3:review:0:0", "hotel:3:review:0:1"]
    faq = kb["hotel:3:faq:0"]
    assert (faq.kind, faq.title) == ("faq", "Is there wifi?")
    assert faq.text == "Bridge Inn. Q: Is there wifi? A: Free wifi everywhere."
    review = kb["hotel:3:review:0:1"]
    assert (review.kind, review.entity) == ("review", "Bridge Inn")
    assert review.text == "Bridge Inn. Breakfast was cold."
    assert [c.case_id for c in ds.cases] == ["hotels-00000", "hotels-00001"]
    assert [c.gold_ids for c in ds.cases] == [["hotel:3:faq:0"], ["hotel:3:review:0:1"]]
    assert ds.cases[1].query == "Is Bridge Inn quiet? Yes. Breakfast?"


def test_temporal_split_keeps_order(tmp_path: Path) -> None:
    logs = [_log(f"question {i}") for i in range(20)]
    labels = [
        {
            "target": True,
            "knowledge": [{"domain": "hotel", "entity_id": 3, "doc_type": "faq", "doc_id": 0}],
            "response": f"answer {i}",
        }
        for i in range(20)
    ]
    ds = load_dstc(_write(tmp_path / "split", DSTC11_KNOWLEDGE, logs, labels))
    train, test = ds.temporal_split()
    assert (len(train), len(test)) == (18, 2)
    assert [c.index for c in train + test] == list(range(20))
    train, test = ds.temporal_split(0.75)
    assert (len(train), len(test)) == (15, 5)
    assert test[0].query == "question 15"
    with pytest.raises(ValueError):
        ds.temporal_split(1.5)


def test_instances_of_one_dialogue_are_one_conversation(tmp_path: Path) -> None:
    """DSTC cuts one dialogue at several customer turns; the instances share their
    opening turns and must never land on both sides of the split."""
    label = {
        "target": True,
        "knowledge": [{"domain": "hotel", "entity_id": 3, "doc_type": "faq", "doc_id": 0}],
        "response": "Yes.",
    }
    logs = [_log(f"hello {i}", f"hi {i}", f"question {i}") for i in range(8)]
    # instance 8 continues dialogue 7 (same opening, a later question); 9 is a one-turn case
    logs += [_log("hello 7", "hi 7", "question 7", "sure", "and parking?"), _log("parking?")]
    ds = load_dstc(_write(tmp_path / "conv", DSTC11_KNOWLEDGE, logs, [label] * len(logs)))
    conv = {c.index: c.conversation for c in ds.cases}
    assert conv[8] == conv[7] == ds.cases[7].case_id
    assert len(set(conv.values())) == 9
    train, test = ds.temporal_split(0.8)  # the cut (8 of 10) falls inside dialogue 7
    assert not {c.conversation for c in train} & {c.conversation for c in test}
    assert [c.index for c in train + test] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert [c.index for c in test] == [9]


def test_case_query_is_the_serving_query(tmp_path: Path) -> None:
    """One query construction: a case's query is what serving builds from the same turns."""
    from kernel.prompt import retrieval_query
    from serving.config import ServingSettings

    logs = [_log("I need a hotel", "Which area?", "Is Bridge Inn quiet?", "Yes.", "Breakfast?")]
    label = {
        "target": True,
        "knowledge": [{"domain": "hotel", "entity_id": 3, "doc_type": "faq", "doc_id": 0}],
        "response": "Yes.",
    }
    (case,) = load_dstc(_write(tmp_path / "q", DSTC11_KNOWLEDGE, logs, [label])).cases
    *earlier, last = case.history
    turns = ServingSettings().query_turns
    assert (
        case.query
        == retrieval_query(last[1], earlier, turns)
        == "Is Bridge Inn quiet? Yes. Breakfast?"
    )


def test_missing_file_names_the_file(dstc11: Path) -> None:
    (dstc11 / "labels.json").unlink()
    with pytest.raises(DatasetError, match=r"labels\.json: file not found"):
        load_dstc(dstc11)


@pytest.mark.parametrize(
    ("file_name", "content", "problem"),
    [
        ("knowledge.json", "[1, 2]", "expected an object of domains"),
        ("knowledge.json", '{"hotel": {"3": {"name": "X"}}}', "none of 'docs', 'faqs'"),
        ("knowledge.json", '{"hotel": {"3": {"faqs": {"0": {"question": 1}}}}}', "string fields"),
        ("knowledge.json", "{not json", "invalid JSON"),
        ("logs.json", '{"a": 1}', "expected a list of dialogues"),
        ("logs.json", "[[], []]", "non-empty list of turns"),
        ("labels.json", '[{"target": true}, {"target": false}]', "non-empty 'knowledge'"),
        ("labels.json", '[{"target": "yes"}, {"target": false}]', "boolean 'target'"),
        ("labels.json", '[{"target": false}]', "has 1 labels but logs.json has 2"),
    ],
)
def test_malformed_input_raises_clear_error(
    dstc11: Path, file_name: str, content: str, problem: str
) -> None:
    (dstc11 / file_name).write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=file_name.replace(".", r"\.")) as err:
        load_dstc(dstc11)
    assert problem in str(err.value)


def test_gold_id_missing_from_kb_is_an_error(dstc11: Path) -> None:
    labels = json.loads((dstc11 / "labels.json").read_text())
    labels[1]["knowledge"][0]["sent_id"] = 9
    (dstc11 / "labels.json").write_text(json.dumps(labels))
    with pytest.raises(DatasetError, match=r"\[1\] gold knowledge not in the KB"):
        load_dstc(dstc11)


def test_demo_is_deterministic_and_seed_dependent(tmp_path: Path) -> None:
    files = ("knowledge.json", "logs.json", "labels.json")
    a, b = generate_demo(tmp_path / "a", n_cases=60), generate_demo(tmp_path / "b", n_cases=60)
    c = generate_demo(tmp_path / "c", n_cases=60, seed=8)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (a / "logs.json").read_bytes() != (c / "logs.json").read_bytes()


def test_demo_loads_with_requested_size_and_resolvable_gold(tmp_path: Path) -> None:
    ds = load_dstc(generate_demo(tmp_path / "demo", n_cases=300))
    assert len(ds.cases) == 300
    assert 250 <= len(ds.knowledge) <= 400
    assert {o.kind for o in ds.knowledge} == {"faq", "review"}
    assert len({o.entity for o in ds.knowledge}) >= 8
    kb = ds.by_id()
    assert len(kb) == len(ds.knowledge)
    assert all(1 <= len(c.gold_ids) <= 3 for c in ds.cases)
    assert all(g in kb for c in ds.cases for g in c.gold_ids)
    # Every case's gold knowledge belongs to one product, and the dialogue mentions it.
    assert all(len({kb[g].entity for g in c.gold_ids}) == 1 for c in ds.cases)
    assert all(2 <= len(c.history) <= 3 and c.history[-1][0] == "U" for c in ds.cases)
    assert all(c.reference and c.query for c in ds.cases)
    # Some chit-chat instances are written and skipped as non-targets.
    logs = json.loads((tmp_path / "demo" / "logs.json").read_text())
    assert len(logs) > 300


def test_demo_questions_are_paraphrased_not_copied(tmp_path: Path) -> None:
    ds = load_dstc(generate_demo(tmp_path / "demo", n_cases=200))
    kb = ds.by_id()
    faq_titles = [
        [kb[g].title.lower() for g in c.gold_ids if kb[g].kind == "faq"] for c in ds.cases
    ]
    assert sum(map(len, faq_titles)) > 100
    copied = [
        c
        for c, titles in zip(ds.cases, faq_titles, strict=True)
        if any(t in c.query.lower() for t in titles)
    ]
    assert not copied


def test_demo_rejects_empty_request(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_cases"):
        generate_demo(tmp_path / "x", n_cases=0)


@pytest.mark.skipif(not HOTEL.is_dir(), reason=f"shared hotel data not at {HOTEL}")
def test_hotel_benchmark_sizes_and_gold() -> None:
    ds = load_dstc(HOTEL)
    assert len(ds.knowledge) == 2895
    assert len(ds.cases) == 1436
    kb = ds.by_id()
    assert sum(o.kind == "faq" for o in ds.knowledge) == 1219
    assert all(g in kb for c in ds.cases for g in c.gold_ids)
    train, test = ds.temporal_split()
    assert (len(train), len(test)) == (1292, 144)
    assert len({c.conversation for c in ds.cases}) == 1224  # 1,436 instances, 1,224 dialogues


@pytest.mark.skipif(not HOTEL.is_dir(), reason=f"shared hotel data not at {HOTEL}")
def test_no_held_out_hotel_conversation_is_replayed() -> None:
    """36 of the 144 held-out instances shared their opening turns with replayed ones when
    the split cut between instances; cut between conversations, none does."""
    ds = load_dstc(HOTEL)
    train, test = ds.temporal_split()
    for turns in (1, 2, 3):
        replayed = {tuple(c.history[:turns]) for c in train if len(c.history) > turns}
        shared = [c.case_id for c in test if tuple(c.history[:turns]) in replayed]
        assert len(shared) <= (5 if turns == 1 else 0), (turns, shared)
    assert not {c.conversation for c in train} & {c.conversation for c in test}
