"""Every kind of PII, seeded into every free-text field, is found in none of the
processors' outputs: verdicts, tables, sealed shards, dead letters' headers, log lines and
metric labels. Only the dead letter's value keeps the original bytes (nothing is lost)."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from kernel import events as ev
from processors.judge import RuleJudge
from processors.redact import KEY_FILE, Redactor, pseudonym_key
from tests.factories import samples
from tests.unit.test_processor_engine import TOPICS, Harness

PII = {
    "email": "jane.doe@example.com",
    "full-width email": "zoe.roe＠example.org",
    "email in a URL": "https://help.example/u?e=max.moe%40example.net",
    "card": "4111.1111.1111.1111",
    "card, spaced": "5500 0000 0000 0004",
    "IBAN": "DE89 3704 0044 0532 0130 00",
    "SSN": "536-22-8813",
    "phone": "+44 20 7946 0958",
    "national phone": "(415) 555-2671",
    "IPv4": "203.0.113.77",
    "IPv6": "2001:db8::8a2e:370:7334",
}
# what must not be found anywhere: each value, and its telling parts
NEEDLES = [
    *PII.values(),
    "jane.doe",
    "zoe.roe",
    "max.moe",
    "4111",
    "0000 0004",
    "3704",
    "536-22",
    "7946",
    "555-2671",
    "203.0.113",
    "8a2e",
]
# uuids, pseudonyms, digests and shard-id suffixes: random lowercase hex that may hold a
# needle's digits by chance (a run needs a letter: a card's bare digits stay searched)
_IDS = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|(?=[0-9a-f]*[a-f])[0-9a-f]{12,}"
    r"|(?<=T\d{6}-)[0-9a-f]{8}\b"
)
SEEDED = " ".join(f"{kind}: {value}." for kind, value in PII.items())


def seeded(event: ev.Event) -> ev.Event:
    return event.redacted(lambda text: f"{text} {SEEDED}")


class QuotingJudge(RuleJudge):
    """A judge whose reasons quote the text (as an LLM judge's may), and that fails on
    one type with the text in the exception."""

    async def judge_many(self, inputs: Any) -> Any:
        if any(isinstance(i.annotation, ev.MissingKnowledge) for i in inputs):
            raise ValueError(f"cannot judge {SEEDED}")
        verdicts = await super().judge_many(inputs)
        quote = f"note:the agent wrote {SEEDED}"
        return [replace(v, reasons=(*v.reasons, quote)) for v in verdicts]


def everything(h: Harness, caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    """Each output of the engine as text."""
    out = h.out
    found = {
        "verdicts": " ".join(v.model_dump_json() for v, _ in out.verdicts),
        "tables": b" ".join([*h.bundles.values(), *h.cases.values()]).decode(),
        "shards": " ".join(str(h.rows(c)) for c in ("retriever", "ranker", "generator")),
        "dlq headers": " ".join(v.decode(errors="replace") for d in out.dead for _, v in d.headers),
        "logs": caplog.text,
        "metric labels": " ".join(
            str(s.labels) for metric in REGISTRY.collect() for s in metric.samples
        ),
    }
    return found


async def test_no_pii_in_any_output(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    h = Harness(tmp_path / "shards")
    h.engine.judge = QuotingJudge()
    s = {k: seeded(e) for k, e in samples().items()}
    await h.feed(s["interaction"], s["suggestion"], s["adoption"], s["preference"])
    await h.feed(s["relevance"], s["missing-knowledge"])
    await h.feed_raw(f"not avro {SEEDED}".encode(), TOPICS.name("interactions"))
    h.seal()
    assert h.out.verdicts and h.out.dead and h.rows("generator"), "the sweep saw no output"
    assert any(d.value and b"4111.1111" in d.value for d in h.out.dead)  # kept, raw
    for where, text in everything(h, caplog).items():
        text = _IDS.sub("<id>", text)  # random ids and digests may hold "4111" or "8a2e"
        for needle in NEEDLES:
            assert needle not in text, f"{needle!r} in {where}"
    verdict_text = " ".join(r for v, _ in h.out.verdicts for r in v.reasons)
    for label in ("[EMAIL]", "[CARD]", "[IBAN]", "[SSN]", "[PHONE]", "[IP]"):
        assert label in verdict_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to zoe＠example.org", "write to [EMAIL]"),
        (
            "https://x.example/reset?user=max%40example.net&t=1",
            "https://x.example/reset?user=[EMAIL]&t=1",
        ),
        ("https://x.example/u/bob@example.org/edit", "https://x.example/u/[EMAIL]/edit"),
        ("card 4111.1111.1111.1111 or 4111/1111/1111/1111", "card [CARD] or [CARD]"),
        ("IBAN GB82 WEST 1234 5698 7654 32, fine", "IBAN [IBAN], fine"),
        ("SSN 536-22-8813", "SSN [SSN]"),
        ("from 203.0.113.77 and 2001:db8::8a2e:370:7334", "from [IP] and [IP]"),
        (
            "IBAN DE89 3704 0044 0532 0130 01 is off by one",
            "IBAN DE89 3704 0044 0532 0130 01 is off by one",
        ),
    ],
)
def test_new_kinds_are_replaced_and_checksums_hold(text: str, expected: str) -> None:
    assert Redactor(b"k").text(text) == expected


def test_a_pseudonym_key_is_made_once_and_kept(tmp_path: Path) -> None:
    first = pseudonym_key(None, tmp_path)
    assert len(first) == 64 and first != b"aitl-dev-pseudonym-key"
    assert pseudonym_key(None, tmp_path) == first  # stable across restarts
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert pseudonym_key(None, tmp_path / "other") != first  # random, not a constant
    assert pseudonym_key("set", tmp_path) == b"set"
