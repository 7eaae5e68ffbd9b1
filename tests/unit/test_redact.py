"""PII redaction on realistic support text, and keyed agent pseudonyms."""

from __future__ import annotations

import pytest

from kernel import events as ev
from processors.redact import Redactor, luhn_ok, redact_event
from tests.factories import samples

R = Redactor(b"test-key", {"order": r"\bORD-\d{6}\b"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Hi, I'm Jane (jane.doe+billing@example.co.uk), my bill doubled!",
            "Hi, I'm Jane ([EMAIL]), my bill doubled!",
        ),
        ("Call me back on +44 20 7946 0958 after 5pm", "Call me back on [PHONE] after 5pm"),
        ("my number is (555) 123-4567.", "my number is [PHONE]."),
        ("tel 06 12 34 56 78 or +1-202-555-0143", "tel [PHONE] or [PHONE]"),
        ("Charge it to 4111 1111 1111 1111 exp 12/27", "Charge it to [CARD] exp 12/27"),
        ("card 4111-1111-1111-1111, amex 3782 822463 10005", "card [CARD], amex [CARD]"),
        ("my order ORD-123456 never arrived", "my order [ORDER] never arrived"),
    ],
)
def test_pii_is_replaced(text: str, expected: str) -> None:
    assert R.text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Ticket 4111 1111 1111 1112 is not a card (fails the Luhn check)",
        "You paid 1234567 EUR on 2026-11-01, invoice 88213",
        "Your plan is 12.50 EUR per month since 01.02.2026",
        "Roaming costs 5 EUR/day in 27 EU countries",
    ],
)
def test_numbers_that_are_not_pii_survive(text: str) -> None:
    assert R.text(text) == text


def test_luhn() -> None:
    assert luhn_ok("4111111111111111") and luhn_ok("378282246310005")
    assert not luhn_ok("4111111111111112")


def test_agent_pseudonyms_are_stable_keyed_and_not_the_id() -> None:
    p = R.agent("agent-7")
    assert p == R.agent("agent-7") and p.startswith("agent-")
    assert p != "agent-7" and len(p) == len("agent-") + 16
    assert Redactor(b"other-key").agent("agent-7") != p
    assert R.agent("agent-8") != p


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError):
        Redactor(b"")


def test_events_are_redacted_field_by_field() -> None:
    s = samples()
    adoption = s["adoption"].model_copy(
        update={
            "final_text": "Sent the refund to jane@example.com, call +1-202-555-0143",
            "rationale_text": "customer gave card 4111 1111 1111 1111 on the phone",
        }
    )
    out = redact_event(R, adoption)
    assert isinstance(out, ev.AdoptionDecision)
    assert out.final_text == "Sent the refund to [EMAIL], call [PHONE]"
    assert out.rationale_text == "customer gave card [CARD] on the phone"
    assert out.agent_id == adoption.agent_id  # ids are pseudonymised where they leave, not here
    chat = s["interaction"].model_copy(update={"customer_message": "I'm bob@example.org"})
    assert redact_event(R, chat).customer_message == "I'm [EMAIL]"  # type: ignore[attr-defined]
