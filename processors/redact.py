"""PII redaction: nothing reaches a shard, a table, a verdict, a dead letter's headers, a
log line or a metric label with PII in it.

Detection is Presidio's pattern recognisers (no NLP model: nothing is downloaded) plus
Google's ``phonenumbers``: emails (also ``＠`` and ``%40``, so inside URLs), payment cards
in any separator format (Luhn-checked, so order numbers of the same length survive),
IBANs (checksum), US social security numbers, phone numbers, IPv4/IPv6 addresses; and
configured patterns. Presidio's anonymizer replaces each with ``[EMAIL]``, ``[CARD]``,
``[IBAN]``, ``[SSN]``, ``[PHONE]``, ``[IP]`` or ``[<NAME>]``. A regular expression that
every kind needs (an ``@``, a run of digits, an address shape) skips the recognisers on
text that cannot hold any, which is most text.

Agent ids are replaced by a keyed HMAC pseudonym: stable (metrics and fatigue tracking
still work per agent), not reversible without the key. Without a configured key, a random
one is made at first start and kept under the data dir (:func:`pseudonym_key`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernel.events import Event

if TYPE_CHECKING:
    from presidio_analyzer import EntityRecognizer

# What a recogniser could match at all: an @ (plain, full-width, URL-encoded), 7+ digits
# with separators between them (phones, cards, IBANs, SSNs), an IPv4 or IPv6 shape.
CANDIDATE = re.compile(
    r"[@＠]|%40|\d(?:[\W_]{0,3}\d){6,}|\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:"
)
EMAIL = r"(?<![\w.+-])[\w.+-]+(?:@|＠|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
# 13-19 digits, grouped by any one or two separators (space, dash, dot, slash, underscore)
CARD = r"(?<![\d])\d(?:[ \t.\-_/]{0,2}\d){12,18}(?!\d)"
# +country, (area), groups of digits: at least 7 digits overall (checked in validate)
PHONE = (
    r"(?<![\w+])(?<!\d[ .-])"  # not the tail of a longer number
    r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d[\d .-]{5,16}\d"
    r"(?!\w)(?![ .-]\d)"  # not the head of a longer number
)
_NOT_DIGIT = re.compile(r"\D")
DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")
LABELS = {
    "EMAIL_ADDRESS": "EMAIL",
    "CREDIT_CARD": "CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "SSN",
    "PHONE_NUMBER": "PHONE",
    "IP_ADDRESS": "IP",
}
MIN_SCORE = 0.3  # below: Presidio's "very weak" guesses (any 9 digits as an SSN)
PHONE_REGIONS = ("US", "GB", "DE", "FR", "IN")


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


def phone_like(text: str) -> bool:
    """A loose phone shape that is not a date, an id or an amount."""
    digits = _NOT_DIGIT.sub("", text)
    if len(digits) < 7 or len(digits) > 15 or DATE.fullmatch(text):
        return False
    # a bare run of digits without phone punctuation is more likely an id or an amount
    return not (text.isdigit() and len(digits) < 10)


def _phone_unsure(span: str) -> bool:
    """Grouped like a phone number, yet rejected by :func:`phone_like` (ask phonenumbers)."""
    return not phone_like(span) and not span.isdigit() and not DATE.fullmatch(span)


@cache
def _presidio() -> Any:
    """Presidio, imported on first use: the import takes seconds (it loads spaCy)."""
    import presidio_analyzer
    import presidio_anonymizer

    return presidio_analyzer, presidio_anonymizer


# What each recogniser needs to see before it runs (Presidio's recognisers cost 5-100 us a
# text each, phonenumbers about 250 us a region: most texts need none of them).
_AT = re.compile(r"[@＠]|%40")
_DIGITS_13 = re.compile(r"\d(?:[\W_]{0,2}\d){12,}")
_IBAN = re.compile(r"[A-Za-z]{2}\d{2}")
_SSN = re.compile(r"\d{3}[- .]?\d{2}[- .]?\d{4}")
_IP = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:")
_PHONE = re.compile(PHONE)


@dataclass(frozen=True)
class _Detector:
    """A Presidio recogniser, run when ``gate`` finds something; ``window``: on each match
    of the gate only (phonenumbers scans the whole text once per region otherwise)."""

    recognizer: EntityRecognizer
    gate: re.Pattern[str] | None = None
    window: Callable[[str], bool] | None = None  # which matches of the gate to analyze

    def analyze(self, text: str) -> list[Any]:
        if self.gate is None:
            return self._run(text)
        if not self.window:
            return self._run(text) if self.gate.search(text) else []
        found = []
        for m in self.gate.finditer(text):
            if not self.window(m.group()):
                continue
            for r in self._run(m.group()):
                r.start, r.end = r.start + m.start(), r.end + m.start()
                found.append(r)
        return found

    def _run(self, text: str) -> list[Any]:
        rec = self.recognizer
        # pattern recognisers and phonenumbers need no NLP artifacts (no spaCy model)
        return list(rec.analyze(text, rec.supported_entities, None))  # type: ignore[arg-type]


def _detectors(patterns: Sequence[tuple[str, str]], regions: Sequence[str]) -> list[_Detector]:
    _presidio()
    from presidio_analyzer import Pattern, PatternRecognizer
    from presidio_analyzer.predefined_recognizers import (
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )

    class CardRecognizer(PatternRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            digits = _NOT_DIGIT.sub("", pattern_text)
            return 13 <= len(digits) <= 19 and luhn_ok(digits)

    class LoosePhoneRecognizer(PatternRecognizer):
        """Phones ``phonenumbers`` finds no valid region for: (555) numbers, odd spacing."""

        def validate_result(self, pattern_text: str) -> bool | None:
            return None if phone_like(pattern_text) else False

    def pattern(entity: str, name: str, regex: str, score: float) -> Any:
        return PatternRecognizer(
            supported_entity=entity, patterns=[Pattern(name, regex, score)], name=name
        )

    phone = Pattern("phone", PHONE, 0.35)
    return [
        # Presidio's EmailRecognizer checks the domain with tldextract, which downloads the
        # public suffix list: this pattern keeps everything local.
        _Detector(pattern("EMAIL_ADDRESS", "email", EMAIL, 1.0), _AT),
        *(_Detector(pattern(name, name, rx, 1.0)) for name, rx in patterns),
        _Detector(
            CardRecognizer(supported_entity="CREDIT_CARD", patterns=[Pattern("card", CARD, 0.5)]),
            _DIGITS_13,
        ),
        _Detector(IbanRecognizer(), _IBAN),
        _Detector(UsSsnRecognizer(), _SSN),
        _Detector(IpRecognizer(), _IP),
        # phonenumbers (about 250 us a region) only where the loose shape says no: a number
        # the loose check accepts is a phone either way
        _Detector(PhoneRecognizer(supported_regions=tuple(regions)), _PHONE, _phone_unsure),
        _Detector(LoosePhoneRecognizer(supported_entity="PHONE_NUMBER", patterns=[phone]), _PHONE),
    ]


@dataclass
class Redactor:
    """Redacts free text and pseudonymises agent ids with a keyed hash."""

    key: bytes
    patterns: Mapping[str, str] = field(default_factory=dict)  # NAME -> regex
    phone_regions: Sequence[str] = PHONE_REGIONS

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("the pseudonym key must not be empty")
        self._extra = [(name.upper(), rx) for name, rx in self.patterns.items()]
        for _, rx in self._extra:
            re.compile(rx)  # a bad pattern fails at start, not on the first message
        self._cache: dict[str, str] = {}
        self._engine: tuple[list[_Detector], Any, dict[str, Any]] | None = None

    def warm(self) -> Redactor:
        """Build the recognisers now (a worker does so at start, not on a message)."""
        if self._engine is None:
            _, anon = _presidio()
            operators = {
                entity: anon.entities.OperatorConfig("replace", {"new_value": f"[{label}]"})
                for entity, label in [*LABELS.items(), *((n, n) for n, _ in self._extra)]
            }
            detectors = _detectors(self._extra, self.phone_regions)
            self._engine = (detectors, anon.AnonymizerEngine(), operators)
        return self

    def text(self, value: str) -> str:
        """The text with every recognised kind of PII replaced by its label."""
        if not value or (not self._extra and not CANDIDATE.search(value)):
            return value
        self.warm()
        assert self._engine is not None
        detectors, anonymizer, operators = self._engine
        _, anon = _presidio()
        found = [
            anon.entities.RecognizerResult(r.entity_type, r.start, r.end, r.score)
            for detector in detectors
            for r in detector.analyze(value)
            if r.score >= MIN_SCORE
        ]
        if not found:
            return value
        out: str = anonymizer.anonymize(
            text=value,
            analyzer_results=found,
            operators=operators,
            conflict_resolution=anon.entities.ConflictResolutionStrategy.REMOVE_INTERSECTIONS,
        ).text
        return out

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


KEY_FILE = "pseudonym.key"


def pseudonym_key(configured: str | None, data_dir: Path) -> bytes:
    """The configured key, else the one kept in ``data_dir`` (made at first start).

    A key made here is 32 random bytes, written once (mode 0600) and read on every later
    start, so pseudonyms stay stable across restarts; workers that do not share the data
    dir must be given one key (``AITL_PROCESSORS_PSEUDONYM_KEY``)."""
    if configured:
        return configured.encode()
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another worker made it first
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    key = path.read_text().strip()
    if not key:
        raise ValueError(f"{path} is empty: delete it or set AITL_PROCESSORS_PSEUDONYM_KEY")
    return key.encode()
