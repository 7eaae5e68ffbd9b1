"""PII redaction: nothing reaches a shard, a table or a verdict with PII in it.

Emails, phone numbers and payment card numbers (Luhn-checked, so order numbers of the
same length survive) become ``[EMAIL]``, ``[PHONE]``, ``[CARD]``; configurable patterns
become ``[NAME]``. Agent ids are replaced by a keyed HMAC pseudonym: stable (metrics and
fatigue tracking still work per agent), not reversible without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from kernel.events import Event

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# 13-19 digits, optionally grouped by single spaces or dashes
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
# +country, (area), groups of digits: at least 7 digits overall (checked in _phone)
PHONE = re.compile(
    r"(?<![\w+])(?<!\d[ .-])"  # not the tail of a longer number
    r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d[\d .-]{5,16}\d"
    r"(?!\w)(?![ .-]\d)"  # not the head of a longer number
)
_DIGIT = re.compile(r"\d")
DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "[CARD]" if 13 <= len(digits) <= 19 and luhn_ok(digits) else match.group()


def _phone(match: re.Match[str]) -> str:
    text = match.group()
    digits = re.sub(r"\D", "", text)
    if len(digits) < 7 or len(digits) > 15 or DATE.fullmatch(text):
        return text
    # a bare run of digits without phone punctuation is more likely an id or an amount
    if text.isdigit() and len(digits) < 10:
        return text
    return "[PHONE]"


@dataclass
class Redactor:
    """Redacts free text and pseudonymises agent ids with a keyed hash."""

    key: bytes
    patterns: Mapping[str, str] = field(default_factory=dict)  # NAME -> regex

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("the pseudonym key must not be empty")
        self._extra = [(name.upper(), re.compile(rx)) for name, rx in self.patterns.items()]
        self._cache: dict[str, str] = {}

    def text(self, value: str) -> str:
        """The text with emails, cards, phones and configured patterns replaced."""
        if not value:
            return value
        if not self._extra and "@" not in value and not _DIGIT.search(value):
            return value  # every built-in pattern needs an @ or a digit
        out = EMAIL.sub("[EMAIL]", value)
        for name, rx in self._extra:  # before cards/phones: a custom id may contain digits
            out = rx.sub(f"[{name}]", out)
        out = CARD.sub(_card, out)
        return PHONE.sub(_phone, out)

    def maybe(self, value: str | None) -> str | None:
        return None if value is None else self.text(value)

    def agent(self, agent_id: str) -> str:
        """A stable pseudonym: ``agent-`` + 16 hex chars of HMAC-SHA256(key, id)."""
        hit = self._cache.get(agent_id)
        if hit is None:
            digest = hmac.new(self.key, agent_id.encode(), hashlib.sha256).hexdigest()
            hit = self._cache[agent_id] = f"agent-{digest[:16]}"
        return hit


def redact_event(r: Redactor, event: Event) -> Event:
    """A copy of the event with every free-text field redacted (the fields each event type
    lists in ``pii_fields``; ids are kept)."""
    return event.redacted(r.text)
