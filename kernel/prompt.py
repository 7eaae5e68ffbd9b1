"""Generator prompts and citations: pure functions the generator trainer reuses.

The model sees the knowledge as numbered snippets (``[1] ...``), because a 135M model
copies a short number far more reliably than an id like ``hotel:12:faq:3``; the reply's
``[n]`` markers are then rewritten to the knowledge ids (``[hotel:12:faq:3]``). A reply
that cites nothing is grounded on the top snippet, and says so with its id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SYSTEM = (
    "You are a customer support agent. Answer the customer's last message using only the "
    "knowledge below, and cite the knowledge you use by its number, like [1].\n\n"
    "Knowledge:\n{knowledge}"
)
STYLES: dict[str, str] = {
    "A": "Reply in one or two short sentences.",
    "B": "Reply warmly and completely, with the key detail first.",
}
_SPEAKERS = {
    "u": "Customer",
    "user": "Customer",
    "customer": "Customer",
    "s": "Agent",
    "system": "Agent",
    "agent": "Agent",
    "assistant": "Agent",
}
_REF = re.compile(r"\[([^\[\]]{1,200})\]")


@dataclass(frozen=True)
class Snippet:
    """One knowledge object shown to the generator."""

    knowledge_id: str
    text: str


def speaker_label(speaker: str) -> str:
    """``Customer`` or ``Agent`` for DSTC (``U``/``S``), event or chat speaker names."""
    return _SPEAKERS.get(speaker.strip().lower(), "Customer")


def retrieval_query(
    query: str, history: Sequence[tuple[str, str]], turns: int = 3, *, sep: str = " "
) -> str:
    """The retrieval query: the last ``turns`` turns' text, the customer's message last.

    The one construction: serving builds the query of ``/v1/suggest`` with it, the
    suggestion event carries it, training rows copy it from there, and the DSTC loader
    builds a case's query with it (history = the log minus its last turn, ``query`` =
    that turn), so training, serving and evaluation see the same text.
    """
    texts = [text for _, text in history][-(turns - 1) :] if turns > 1 else []
    return sep.join([*texts, query]).strip()


def build_messages(
    query: str,
    history: Sequence[tuple[str, str]],
    snippets: Sequence[Snippet],
    style: str = "A",
    *,
    max_turns: int = 4,
    max_chars: int = 300,
) -> list[dict[str, str]]:
    """Chat messages for the agent's next reply: knowledge in the system message, the
    conversation as user (customer) / assistant (agent) turns, the customer's message last.

    A small instruction model answers a user turn far better than it follows a transcript
    pasted into one message (it tends to continue the transcript).
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; known: {', '.join(STYLES)}")
    knowledge = "\n".join(
        f"[{n}] {_clip(s.text, max_chars)}" for n, s in enumerate(snippets, start=1)
    )
    system = SYSTEM.format(knowledge=knowledge or "(none)") + "\n\n" + STYLES[style]
    messages = [{"role": "system", "content": system}]
    turns = [(speaker_label(sp), _clip(text, max_chars)) for sp, text in history]
    recent = turns[-(max_turns - 1) :] if max_turns > 1 else []
    turns = [*recent, ("Customer", _clip(query, max_chars))]
    for label, text in turns:
        role = "user" if label == "Customer" else "assistant"
        if messages[-1]["role"] == role:  # two turns in a row from one side: merge them
            messages[-1] = {"role": role, "content": messages[-1]["content"] + "\n" + text}
        else:
            messages.append({"role": role, "content": text})
    return messages


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def resolve_citations(text: str, snippets: Sequence[Snippet]) -> tuple[str, list[str]]:
    """Rewrite ``[n]`` / ``[n, m]`` / ``[id]`` markers to ``[knowledge-id]``.

    Returns the text and the cited ids in first-cited order. Markers naming no shown
    snippet are removed, so a reply never cites knowledge it was not given.
    """
    by_number = {str(n): s.knowledge_id for n, s in enumerate(snippets, start=1)}
    shown = {s.knowledge_id for s in snippets}
    cited: list[str] = []

    def replace(match: re.Match[str]) -> str:
        ids = []
        for part in re.split(r"\s*[,;]\s*", match.group(1).strip()):
            kid = by_number.get(part.strip()) or (part if part in shown else None)
            if kid is not None:
                ids.append(kid)
        for kid in ids:
            if kid not in cited:
                cited.append(kid)
        return "".join(f"[{kid}]" for kid in dict.fromkeys(ids))

    out = _REF.sub(replace, text)
    return re.sub(r"[ \t]{2,}", " ", out).strip(), cited


def extractive_answer(text: str, max_chars: int | None = None) -> str:
    """The reply a knowledge text gives by itself: the answer of an FAQ (after ``A:``),
    else the text (clipped to ``max_chars`` when given)."""
    answer = text.split(" A: ", 1)[1] if " A: " in text else text
    return answer if max_chars is None else _clip(answer, max_chars)


def ground(text: str, snippets: Sequence[Snippet]) -> tuple[str, list[str]]:
    """Resolve citations; a reply citing nothing cites the top snippet at its end."""
    out, cited = resolve_citations(text, snippets)
    if not cited and snippets:
        top = snippets[0].knowledge_id
        out, cited = f"{out} [{top}]".strip(), [top]
    return out, cited


@dataclass(frozen=True)
class PromptShape:
    """What the serving generator shows (``Settings.prompt_knowledge`` / ``prompt_chars``):
    the first ``knowledge`` ranked objects, each clipped to ``chars``. Training prompts are
    built with the same shape, so training sees what serving shows."""

    knowledge: int = 3
    chars: int = 300


def build_prompt(
    query: str,
    knowledge: Sequence[tuple[str, str | None]],
    customer_message: str = "",
    history: Sequence[tuple[str, str]] = (),
    chars: int = 300,
) -> str:
    """The generator prompt exactly as serving builds it: a JSON list of chat messages,
    the numbered knowledge shown in the system turn, then the conversation (``history`` as
    (speaker, text) pairs). Style A (serving's default)."""
    key = (customer_message or query, tuple(knowledge), tuple(history), chars)
    prompt = _PROMPTS.get(key)
    if prompt is None:  # a request's preference and adoption show the same prompt
        snippets = [Snippet(kid, text or "(text unavailable)") for kid, text in knowledge]
        messages = build_messages(key[0], list(history), snippets, "A", max_chars=chars)
        prompt = json.dumps(messages, ensure_ascii=False)
        if len(_PROMPTS) >= 4096:
            _PROMPTS.clear()
        _PROMPTS[key] = prompt
    return prompt


_PROMPTS: dict[tuple[Any, ...], str] = {}
