"""Synthetic sealed shards with an easy, learnable signal: for tests, the benchmark, smoke runs.

Customers name each topic by a code phrase ("amber falcon") that never appears in the
topic's knowledge text, so a stock embedder cannot match them and any trainer that learns
from the shards visibly improves. Train and eval queries use different phrasings; eval
rows are later in time than train rows (the temporal split).
"""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from kernel.shards import Manifest, ShardStore

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
JUDGE_VERSION = "synthetic-judge-1"

TOPICS: list[tuple[str, str]] = [
    ("refund", "Refunds go back to the original payment card within five business days."),
    ("delivery", "Parcels ship from the central warehouse and arrive in two to four days."),
    ("password", "Reset the account password from the login page with the emailed link."),
    ("roaming", "Mobile data abroad costs five euros per day with the travel pass."),
    ("invoice", "Monthly invoices are available as PDF files in the billing section."),
    ("warranty", "Hardware faults are repaired for free during the two year warranty."),
    ("cancellation", "Contracts can be cancelled with thirty days notice in writing."),
    ("upgrade", "A device upgrade is possible after twelve months of the contract."),
    ("outage", "Network outages are listed on the status page with repair estimates."),
    ("privacy", "Personal data is deleted on request within one calendar month."),
    ("loyalty", "Loyalty points are earned on every purchase and expire after a year."),
    ("sim", "A replacement SIM card is posted free of charge within three days."),
    ("porting", "Keeping your old number requires the porting code from the previous provider."),
    ("payment", "Direct debit is collected on the first working day of each month."),
    ("speed", "Broadband speed tests should be run with a cable, not over wifi."),
    ("appointment", "Technician visits can be booked online for weekday mornings."),
]
CODES = [
    "amber falcon", "cobalt otter", "crimson lynx", "dusty heron", "emerald bison", "frosty marten",
    "golden ibis", "hazel condor", "ivory gecko", "jade walrus", "khaki puffin", "lilac jackal",
    "maroon tapir", "navy osprey", "olive badger", "pearl mantis",
]  # fmt: skip
DISTRACTORS = [
    "Store opening hours are nine to six on weekdays and ten to four on Saturdays.",
    "Gift cards cannot be exchanged for cash and are valid for three years.",
    "The mobile app supports dark mode and fingerprint login.",
    "Business customers have a dedicated account manager.",
    "Accessibility options include large print bills and a text relay service.",
    "Our head office is located in the city centre near the main station.",
    "Newsletters can be unsubscribed from via the link at the bottom of each email.",
    "Students receive a ten percent discount with a valid student card.",
]
TRAIN_TEMPLATES = [
    "I have a question about the {c} thing",
    "{c} please help",
    "can you tell me about {c}?",
    "what is the deal with {c}",
    "hello, {c} again",
    "my issue is {c}",
]
EVAL_TEMPLATES = ["need info on {c} today", "quick one regarding {c}"]
REJECTED = "Sorry, I am not able to help with that. Please call us."


def synthetic_kb() -> list[tuple[str, str]]:
    """The knowledge base: one object per topic plus unrelated distractors."""
    kb = [(f"kb-{name}", text) for name, text in TOPICS]
    kb += [(f"kb-other-{i}", text) for i, text in enumerate(DISTRACTORS)]
    return kb


def _rows(
    component: str, query: str, topic: int, n: int, when: datetime, rng: random.Random, topics: int
) -> list[dict[str, Any]]:
    name, text = TOPICS[topic]
    others = [i for i in range(max(topics, 4)) if i != topic]
    common = {
        "source_event_ids": [f"ev-{component}-{n}"],
        "case_id": f"case-{n}",
        "request_id": f"req-{n}",
        "event_time": when,
        "weight": 1.0,
    }
    if component == "retriever":
        neg = rng.sample(others, 2)
        return [
            common
            | {
                "example_id": f"ex-r-{n}",
                "query": query,
                "positive_id": f"kb-{name}",
                "positive_text": text,
                "negative_ids": [f"kb-{TOPICS[i][0]}" for i in neg],
                "negative_texts": [TOPICS[i][1] for i in neg],
            }
        ]
    if component == "ranker":
        shown = [(topic, 1.0)] + [(i, 0.0) for i in rng.sample(others, 3)]
        return [
            common
            | {
                "example_id": f"ex-k-{n}-{j}",
                "query": query,
                "knowledge_id": f"kb-{TOPICS[i][0]}",
                "text": TOPICS[i][1],
                "label": label,
            }
            for j, (i, label) in enumerate(shown)
        ]
    prompt = (
        f"Customer: {query}\nKnowledge [kb-{name}]: {text}\n"
        "Reply to the customer citing the knowledge."
    )
    return [
        common
        | {
            "example_id": f"ex-g-{n}",
            "prompt": prompt,
            "chosen": f"{text} [kb-{name}]",
            "rejected": REJECTED,
            "rationale": "the other reply ignored the policy the customer asked about",
            "rationale_category": "INACCURATE",
            "knowledge_ids": [f"kb-{name}"],
        }
    ]


def write_synthetic_shards(
    store: ShardStore,
    component: str,
    n_train: int,
    n_eval: int,
    *,
    shard_rows: int = 500,
    seed: int = 0,
    start: datetime = T0,
    prefix: str = "syn",
    topics: int = len(TOPICS),
) -> list[Manifest]:
    """Write sealed train and eval shards of ``n_train``/``n_eval`` annotated cases.

    ``topics`` limits the cases to the first topics (an easier task: more repeats each).
    """
    rng = random.Random(seed)
    written = []
    for split, n_cases, templates, offset in (
        ("train", n_train, TRAIN_TEMPLATES, 0),
        ("eval", n_eval, EVAL_TEMPLATES, n_train),
    ):
        cases = []
        for i in range(n_cases):
            topic = (i + seed) % topics
            query = templates[(i // len(TOPICS)) % len(templates)].format(c=CODES[topic])
            when = start + timedelta(seconds=offset + i)
            cases.append(_rows(component, query, topic, offset + i, when, rng, topics))
        for k in range(0, n_cases, shard_rows):
            rows = [r for case in cases[k : k + shard_rows] for r in case]
            written.append(
                store.write(
                    _manifest(
                        component,
                        split,
                        f"{prefix}-{split}-{k // shard_rows:04d}",
                        rows,
                        offset + k,
                    ),
                    rows,
                )
            )
    return written


def _manifest(
    component: str, split: str, shard_id: str, rows: list[dict[str, Any]], first: int
) -> Manifest:
    times = [r["event_time"] for r in rows]
    digest = hashlib.sha256("".join(sorted(r["example_id"] for r in rows)).encode()).hexdigest()
    return Manifest(
        shard_id=shard_id,
        component=component,
        split=split,
        rows=len(rows),
        min_event_time=min(times).isoformat(),
        max_event_time=max(times).isoformat(),
        judge_version=JUDGE_VERSION,
        source_offsets=[
            {
                "topic": "synthetic",
                "partition": 0,
                "first_offset": first,
                "last_offset": first + len(rows) - 1,
            }
        ],
        example_ids_sha256=digest,
        created_at=max(times).isoformat(),
    )
