"""Knowledge-grounded support datasets in the DSTC9/10/11 on-disk form.

A dataset directory holds `knowledge.json` (the knowledge base), `logs.json` (dialogue
prefixes ending with the customer's turn) and `labels.json` (aligned gold knowledge and the
human agent's reply). Both knowledge variants are read:

- DSTC9/10: `{domain: {entity_id: {"name", "docs": {doc_id: {"title", "body"}}}}}`, with
  entity `"*"` (and no name) for domain-wide docs. One object per doc, id
  `{domain}:{entity_id}:doc:{doc_id}`, text `"{name}. {title} {body}"`.
- DSTC11: `{"faqs": {doc_id: {"question", "answer"}}, "reviews": {doc_id: {"sentences":
  {sent_id: text}}}}` per entity. One object per FAQ, id `{domain}:{entity_id}:faq:{doc_id}`,
  text `"{name}. Q: {question} A: {answer}"`; one per review sentence, id
  `{domain}:{entity_id}:review:{doc_id}:{sent_id}`, text `"{name}. {sentence}"`.

Without an entity name the `"{name}. "` prefix is left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from kernel.errors import DataError
from kernel.prompt import retrieval_query

KnowledgeKind = Literal["policy", "faq", "case", "review", "doc"]

KNOWLEDGE_FILE = "knowledge.json"
LOGS_FILE = "logs.json"
LABELS_FILE = "labels.json"


class DatasetError(DataError):
    """A dataset file is missing or does not have the expected shape."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True, slots=True)
class KnowledgeObject:
    """One retrievable piece of knowledge; `text` is what gets embedded and shown."""

    id: str
    kind: KnowledgeKind
    title: str
    text: str
    entity: str | None  # the entity's name; None for domain-wide knowledge


@dataclass(frozen=True, slots=True)
class Case:
    """One knowledge-seeking customer turn with its gold knowledge and reference reply.

    `history` is the whole dialogue prefix as (speaker, text), ending with the customer's
    question; `query` is the retrieval query built from its last turns
    (:func:`kernel.prompt.retrieval_query`, the one construction serving and training use);
    `index` is the instance's position in `logs.json`. `conversation_id` names the dialogue
    the instance is cut from: DSTC stores one dialogue as several instances that share their
    opening turns, and every one of them belongs to one conversation (one support case).
    """

    case_id: str
    index: int
    history: list[tuple[str, str]]
    query: str
    gold_ids: list[str]
    reference: str
    conversation_id: str = ""

    @property
    def conversation(self) -> str:
        """The conversation this instance belongs to (its own id when none was set)."""
        return self.conversation_id or self.case_id


@dataclass(frozen=True, slots=True)
class Dataset:
    """A knowledge base and the support cases grounded in it, cases in dialogue order."""

    name: str
    knowledge: list[KnowledgeObject]
    cases: list[Case]

    def by_id(self) -> dict[str, KnowledgeObject]:
        """Knowledge objects keyed by id."""
        return {obj.id: obj for obj in self.knowledge}

    def temporal_split(self, frac: float = 0.9) -> tuple[list[Case], list[Case]]:
        """First `frac` of the cases for training, the rest for evaluation, order kept.

        The cut falls between conversations, never inside one: a conversation whose first
        instance comes before the cut is wholly on the training side, so no held-out case
        shares its opening turns with a replayed one.
        """
        if not 0.0 <= frac <= 1.0:
            raise ValueError(f"frac must be in [0, 1], got {frac}")
        # The epsilon keeps e.g. 0.29 * 100 from flooring to 28.
        cut = int(len(self.cases) * frac + 1e-9)
        ordered = by_conversation(self.cases)
        before = {c.conversation for c in ordered[:cut]}
        return (
            [c for c in ordered if c.conversation in before],
            [c for c in ordered if c.conversation not in before],
        )


OPENING_TURNS = 2  # instances sharing this many opening turns are one conversation


def opening(history: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The opening turns that identify a dialogue: the first ``OPENING_TURNS``, never the
    instance's own last turn (the question it was cut at)."""
    return tuple(history[: min(OPENING_TURNS, len(history) - 1)])


def conversation_ids(
    histories: Sequence[Sequence[tuple[str, str]]], ids: Sequence[str]
) -> list[str]:
    """Per instance, the id of the first instance with the same opening turns (its own id
    when it has none to share: a one-turn instance)."""
    first: dict[tuple[tuple[str, str], ...], str] = {}
    out = []
    for history, case_id in zip(histories, ids, strict=True):
        key = opening(history)
        out.append(first.setdefault(key, case_id) if key else case_id)
    return out


def by_conversation(cases: Sequence[Case]) -> list[Case]:
    """Cases grouped by conversation, conversations in order of their first instance and
    instances in dialogue order (shorter prefix first): the order a replay happens in."""
    rank: dict[str, int] = {}
    for i, c in enumerate(cases):
        rank.setdefault(c.conversation, i)
    order = sorted(
        range(len(cases)), key=lambda i: (rank[cases[i].conversation], len(cases[i].history), i)
    )
    return [cases[i] for i in order]


def load_dstc(
    path: Path,
    domains: set[str] | None = None,
    query_turns: int = 3,
    *,
    name: str | None = None,
    turn_sep: str = " ",
) -> Dataset:
    """Read a DSTC-style dataset directory into a `Dataset`.

    Only instances labelled `target: true` become cases. `domains` keeps the knowledge of
    those domains and the cases whose gold knowledge lies entirely in them. The query is the
    text of the last `query_turns` turns joined with `turn_sep` (a plain space by default, the
    form the shared benchmark's baseline was measured with; speakers are not marked).
    """
    if query_turns < 1:
        raise ValueError(f"query_turns must be at least 1, got {query_turns}")
    path = Path(path)
    knowledge_path = path / KNOWLEDGE_FILE
    knowledge = _parse_knowledge(knowledge_path, _read_json(knowledge_path), domains)
    known = {obj.id for obj in knowledge}

    logs_path, labels_path = path / LOGS_FILE, path / LABELS_FILE
    logs, labels = _read_json(logs_path), _read_json(labels_path)
    if not isinstance(logs, list):
        raise DatasetError(logs_path, f"expected a list of dialogues, got {type(logs).__name__}")
    if not isinstance(labels, list):
        raise DatasetError(labels_path, f"expected a list of labels, got {type(labels).__name__}")
    if len(logs) != len(labels):
        raise DatasetError(
            labels_path, f"has {len(labels)} labels but {LOGS_FILE} has {len(logs)} dialogues"
        )

    ds_name = name or path.name
    cases: list[Case] = []
    for index, (log, label) in enumerate(zip(logs, labels, strict=True)):
        if not isinstance(label, Mapping) or not isinstance(label.get("target"), bool):
            raise DatasetError(labels_path, f"[{index}] needs a boolean 'target'")
        if not label["target"]:
            continue
        gold = _gold_ids(labels_path, index, label)
        if domains is not None and any(g.split(":", 1)[0] not in domains for g in gold):
            continue
        missing = [g for g in gold if g not in known]
        if missing:
            raise DatasetError(labels_path, f"[{index}] gold knowledge not in the KB: {missing}")
        reference = label.get("response")
        if not isinstance(reference, str):
            raise DatasetError(labels_path, f"[{index}] target instance needs a 'response' string")
        history = _parse_log(logs_path, index, log)
        *earlier, last = history
        query = retrieval_query(last[1], earlier, query_turns, sep=turn_sep)
        cases.append(
            Case(
                case_id=f"{ds_name}-{index:05d}",
                index=index,
                history=history,
                query=query,
                gold_ids=gold,
                reference=reference,
            )
        )
    conversations = conversation_ids([c.history for c in cases], [c.case_id for c in cases])
    cases = [replace(c, conversation_id=conv) for c, conv in zip(cases, conversations, strict=True)]
    return Dataset(name=ds_name, knowledge=knowledge, cases=cases)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise DatasetError(path, "file not found")
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetError(path, f"invalid JSON: {e}") from e


def _parse_knowledge(path: Path, raw: Any, domains: set[str] | None) -> list[KnowledgeObject]:
    if not isinstance(raw, Mapping):
        raise DatasetError(path, "expected an object of domains")
    objects: list[KnowledgeObject] = []
    for domain, entities in raw.items():
        if domains is not None and domain not in domains:
            continue
        if not isinstance(entities, Mapping):
            raise DatasetError(path, f"domain {domain!r}: expected an object of entities")
        for entity_id, entity in entities.items():
            where = f"{domain}/{entity_id}"
            if not isinstance(entity, Mapping):
                raise DatasetError(path, f"{where}: expected an entity object")
            objects.extend(_entity_objects(path, where, domain, str(entity_id), entity))
    return objects


def _entity_objects(
    path: Path, where: str, domain: str, entity_id: str, entity: Mapping[str, Any]
) -> list[KnowledgeObject]:
    if not any(key in entity for key in ("docs", "faqs", "reviews")):
        raise DatasetError(path, f"{where}: entity has none of 'docs', 'faqs', 'reviews'")
    raw_name = entity.get("name")
    # DSTC9 marks domain-wide knowledge with entity "*" (name absent, null or "*").
    name = None if entity_id == "*" or raw_name in (None, "", "*") else str(raw_name)
    prefix = f"{name}. " if name else ""
    title_default = name or domain
    base = f"{domain}:{entity_id}"
    out: list[KnowledgeObject] = []
    for doc_id, doc in _section(path, where, entity, "docs").items():
        title, body = _fields(path, f"{where}/docs/{doc_id}", doc, "title", "body")
        out.append(
            KnowledgeObject(f"{base}:doc:{doc_id}", "doc", title, f"{prefix}{title} {body}", name)
        )
    for doc_id, doc in _section(path, where, entity, "faqs").items():
        question, answer = _fields(path, f"{where}/faqs/{doc_id}", doc, "question", "answer")
        text = f"{prefix}Q: {question} A: {answer}"
        out.append(KnowledgeObject(f"{base}:faq:{doc_id}", "faq", question, text, name))
    for doc_id, review in _section(path, where, entity, "reviews").items():
        sentences = review.get("sentences") if isinstance(review, Mapping) else None
        if not isinstance(sentences, Mapping):
            raise DatasetError(path, f"{where}/reviews/{doc_id}: expected a 'sentences' object")
        for sent_id, sentence in sentences.items():
            if not isinstance(sentence, str):
                raise DatasetError(path, f"{where}/reviews/{doc_id}/{sent_id}: expected text")
            out.append(
                KnowledgeObject(
                    f"{base}:review:{doc_id}:{sent_id}",
                    "review",
                    title_default,
                    f"{prefix}{sentence}",
                    name,
                )
            )
    return out


def _section(path: Path, where: str, entity: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    section = entity.get(key, {})
    if not isinstance(section, Mapping):
        raise DatasetError(path, f"{where}: '{key}' must be an object keyed by id")
    return section


def _fields(path: Path, where: str, doc: Any, *keys: str) -> list[str]:
    if not isinstance(doc, Mapping) or not all(isinstance(doc.get(k), str) for k in keys):
        raise DatasetError(path, f"{where}: expected string fields {list(keys)}")
    return [doc[k] for k in keys]


def _gold_ids(path: Path, index: int, label: Mapping[str, Any]) -> list[str]:
    items = label.get("knowledge")
    if not isinstance(items, list) or not items:
        raise DatasetError(path, f"[{index}] target instance needs a non-empty 'knowledge' list")
    gold: list[str] = []
    for k in items:
        if not isinstance(k, Mapping) or not all(
            key in k for key in ("domain", "entity_id", "doc_id")
        ):
            raise DatasetError(path, f"[{index}] knowledge item needs domain, entity_id, doc_id")
        base = f"{k['domain']}:{k['entity_id']}"
        doc_type = k.get("doc_type")
        if doc_type is None:
            gold.append(f"{base}:doc:{k['doc_id']}")
        elif doc_type == "faq":
            gold.append(f"{base}:faq:{k['doc_id']}")
        elif doc_type == "review" and "sent_id" in k:
            gold.append(f"{base}:review:{k['doc_id']}:{k['sent_id']}")
        else:
            raise DatasetError(path, f"[{index}] unknown knowledge reference {dict(k)}")
    return list(dict.fromkeys(gold))  # de-duplicated, order kept


def _parse_log(path: Path, index: int, log: Any) -> list[tuple[str, str]]:
    if not isinstance(log, list) or not log:
        raise DatasetError(path, f"[{index}] expected a non-empty list of turns")
    turns: list[tuple[str, str]] = []
    for turn in log:
        speaker = turn.get("speaker") if isinstance(turn, Mapping) else None
        text = turn.get("text") if isinstance(turn, Mapping) else None
        if not isinstance(speaker, str) or not isinstance(text, str):
            raise DatasetError(path, f"[{index}] each turn needs 'speaker' and 'text' strings")
        turns.append((speaker, text))
    return turns
