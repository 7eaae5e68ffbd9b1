"""Generator prompts: knowledge shown by number, citations rewritten to knowledge ids."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.prompt import Snippet, build_messages, ground, resolve_citations, retrieval_query

SNIPPETS = [
    Snippet("hotel:1:faq:2", "Pets are allowed for a $20 fee."),
    Snippet("hotel:1:review:5:0", "The breakfast was great."),
]


def test_messages_number_the_knowledge_and_end_with_the_customer() -> None:
    history = [("U", "Hi, a question about the Acorn hotel"), ("S", "Sure, go ahead.")]
    messages = build_messages("Can I bring my dog?", history, SNIPPETS)
    system = messages[0]["content"]
    assert messages[0]["role"] == "system"
    assert "[1] Pets are allowed for a $20 fee." in system
    assert "[2] The breakfast was great." in system
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user"]
    assert messages[-1] == {"role": "user", "content": "Can I bring my dog?"}


def test_styles_a_and_b_differ_and_unknown_style_is_rejected() -> None:
    a = build_messages("q", [], SNIPPETS, "A")
    b = build_messages("q", [], SNIPPETS, "B")
    assert a[0]["content"] != b[0]["content"]
    with pytest.raises(ValueError, match="style"):
        build_messages("q", [], SNIPPETS, "C")


def test_long_history_is_cut_and_same_side_turns_merge() -> None:
    history = [("U", f"turn {i}") for i in range(10)]
    messages = build_messages("last", history, SNIPPETS, max_turns=3)
    assert messages[-1] == {"role": "user", "content": "turn 8\nturn 9\nlast"}


def test_numbers_become_knowledge_ids() -> None:
    text, cited = resolve_citations("Dogs ok [2]. Fee applies [1, 2].", SNIPPETS)
    assert text == "Dogs ok [hotel:1:review:5:0]. Fee applies [hotel:1:faq:2][hotel:1:review:5:0]."
    assert cited == ["hotel:1:review:5:0", "hotel:1:faq:2"]


def test_unknown_references_are_dropped_and_literal_ids_kept() -> None:
    text, cited = resolve_citations("See [7] and [hotel:1:faq:2].", SNIPPETS)
    assert text == "See and [hotel:1:faq:2]."
    assert cited == ["hotel:1:faq:2"]


def test_reply_without_citation_is_grounded_on_the_top_snippet() -> None:
    text, cited = ground("Yes, pets are welcome.", SNIPPETS)
    assert text == "Yes, pets are welcome. [hotel:1:faq:2]"
    assert cited == ["hotel:1:faq:2"]
    assert ground("Hello.", []) == ("Hello.", [])


def test_retrieval_query_is_the_last_turns_like_the_dataset() -> None:
    history = [("U", "a"), ("S", "b"), ("U", "c")]
    assert retrieval_query("d", history, turns=3) == "b c d"
    assert retrieval_query("d", [], turns=3) == "d"
    assert retrieval_query("d", history, turns=1) == "d"


def test_extractive_b_quotes_the_top_knowledge_and_decodes_only_a(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kernel.prompt import extractive_answer
    from serving.generator import Generator

    decoded: list[list[str]] = []

    def complete(self: Generator, prompts: list[str], *, sample: bool = False) -> Any:
        decoded.append(list(prompts))
        return ["Roaming is 5 EUR a day [1]." for _ in prompts], 7 * len(prompts)

    monkeypatch.setattr(Generator, "complete", complete)
    monkeypatch.setattr(Generator, "prompt_texts", lambda self, msgs: [str(m) for m in msgs])
    gen = Generator(None, None, "stock", variant_b="extractive", snippet_chars=60)
    faq = "Q: What does roaming cost? A: Roaming costs 5 EUR per day in the EU, billed later."
    snippets = [Snippet("kb-1", faq), Snippet("kb-2", "Late fees are 10 EUR.")]
    (out,) = gen.generate_many([("roaming?", [], snippets)])
    assert len(decoded) == 1 and len(decoded[0]) == 1, "one prompt decoded per request"
    a, b = out.replies
    assert a.text == "Roaming is 5 EUR a day [kb-1]." and a.cited_knowledge_ids == ["kb-1"]
    assert b.text == "Roaming costs 5 EUR per day in the EU, billed later. [kb-1]"
    assert b.cited_knowledge_ids == ["kb-1"]
    assert extractive_answer(faq, 20) == "Roaming costs 5 EUR…"
    assert extractive_answer("No FAQ here.") == "No FAQ here."
