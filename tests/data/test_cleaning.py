"""Table-driven tests for every cleaning rule, and hypothesis properties of the normaliser."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from nebras_bot.data.cleaning import (
    CleaningStats,
    clean_exchange,
    fill_slots,
    map_bitext_placeholders,
    neutral_for_hole,
    normalize_text,
    placeholder_entity_values,
    scrub_protecting,
    slot_for_hole,
    unfilled_bitext_holes,
)

NORMALISE = [
    ("  hello\n\n world\t ", "hello world"),
    ("\u201cquoted\u201d and \u2018single\u2019", "\"quoted\" and 'single'"),
    ("full\uff57idth \uff21\uff22\uff23", "fullwidth ABC"),  # NFKC
    ("zero\u200bwidth", "zero width"),
    ("em\u2014dash and en\u2013dash", "em-dash and en-dash"),
    ("wait\u2026", "wait..."),
    ("caf\u0065\u0301", "caf\u00e9"),  # NFKC composes
    ("", ""),
]


@pytest.mark.parametrize("raw, expected", NORMALISE)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_normaliser_is_idempotent_and_tidy(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert once == once.strip()
    assert "  " not in once and "\n" not in once and "\t" not in once
    assert not any(ch in once for ch in "\u2018\u2019\u201c\u201d\u200b\ufeff")


SLOT_HOLES = [
    ("Order Number", "order_id"),
    ("Order Number Anonymized", "order_id"),
    ("Purchase ID Anonymized", "order_id"),
    ("Invoice Number Anonymized", "invoice_id"),
    ("Bill Number Anonymized", "invoice_id"),
    ("Refund Amount", "refund_amount"),
    ("Name Field Anonymized", "person_name"),
    ("Client First Name", "person_name"),
    ("Delivery City", "delivery_city"),
    ("Account Type", "account_type"),
    ("Website URL", None),
    ("Order History", None),
]


@pytest.mark.parametrize("hole, slot", SLOT_HOLES)
def test_slot_for_hole(hole: str, slot) -> None:
    assert slot_for_hole(hole) == slot


NEUTRAL_HOLES = [
    ("Customer Support Phone Number", "customer support phone line"),
    ("Customer Support Email", "support email address"),
    ("Website URL", "website"),
    ("Website Name", "website"),
    ("Company Name", "company"),
    ("Customer Support Hours", "support hours"),
    ("Order History", None),  # a UI label, not a contact detail
]


@pytest.mark.parametrize("hole, phrase", NEUTRAL_HOLES)
def test_neutral_for_hole(hole: str, phrase) -> None:
    assert neutral_for_hole(hole) == phrase


PLACEHOLDERS = [
    # (reply, known entities, expected)
    ("Your order {{Order Number}} is here.", {"order_id": "123"}, "Your order {order_id} is here."),
    ("Cancel {{Order Number}} now.", {}, "Cancel your order now."),
    ("Call {{Customer Support Phone Number}} today.", {}, "Call our customer support phone line today."),
    ("Visit our {{Website URL}}.", {}, "Visit our website."),
    ("We are available {{Customer Support Hours}}.", {}, "We are available during our support hours."),
    ("Open the {{Order History}} section.", {}, "Open the Order History section."),
    ("Order number {{113542617735902}} is ok", {"order_id": "113542617735902"}, "Order number {order_id} is ok"),
    ("Don't worry, {{Name Field Anonymized}}, I'm here.", {}, "Don't worry, I'm here."),
    ("No holes here.", {}, "No holes here."),
]


@pytest.mark.parametrize("reply, known, expected", PLACEHOLDERS)
def test_map_bitext_placeholders(reply: str, known, expected: str) -> None:
    out = map_bitext_placeholders(reply, known)
    assert out == expected
    assert not unfilled_bitext_holes(out)


def test_no_invented_numbers_for_contact_holes() -> None:
    out = map_bitext_placeholders("Phone {{Customer Support Phone Number}} or {{Customer Support Email}}", {})
    assert not any(ch.isdigit() for ch in out) and "@" not in out


ENTITY_VALUES = [
    ("Order 12345 is on its way; 12345 again.", {"order_id": "12345"}, "Order {order_id} is on its way; {order_id} again."),
    ("Invoice #00108 is ready.", {"invoice_id": "#00108"}, "Invoice #{invoice_id} is ready."),
    ("Order 123456 differs.", {"order_id": "12345"}, "Order 123456 differs."),  # whole tokens only
    ("Hello Mr. Jones!", {"person_name": "Mr. Jones"}, "Hello {person_name}!"),
    ("Shipping to valencia and Valencia", {"delivery_city": "Valencia"}, "Shipping to {delivery_city} and {delivery_city}"),
    ("Feel free to open a Free account.", {"account_type": "free"}, "Feel free to open a {account_type} account."),
    ("Your pro tip: the Pro plan.", {"account_type": "Pro"}, "Your pro tip: the {account_type} plan."),
    ("A refund of $12 arrives. Step 12. done", {"refund_amount": "12"}, "A refund of ${refund_amount} arrives. Step 12. done"),
    ("Refund of 1499 dollars.", {"refund_amount": "1499"}, "Refund of {refund_amount} dollars."),
    ("1. Log in.", {"refund_amount": "1"}, "1. Log in."),
]


@pytest.mark.parametrize("reply, known, expected", ENTITY_VALUES)
def test_placeholder_entity_values(reply: str, known, expected: str) -> None:
    assert placeholder_entity_values(reply, known) == expected


def test_scrub_protects_known_entity_values() -> None:
    text = "order 4111111111111111, mail me at a@b.com"
    stats = CleaningStats()
    assert scrub_protecting(text, {"order_id": "4111111111111111"}, stats) == "order 4111111111111111, mail me at [EMAIL]"
    assert stats.counts["pii:[EMAIL]"] == 1
    assert scrub_protecting(text, {}) == "order [CARD], mail me at [EMAIL]"


def test_clean_exchange_end_to_end() -> None:
    stats = CleaningStats()
    instruction, reply = clean_exchange(
        "where is  order 12345? call me on +44 20 7946 0958",
        "Order 12345 ships soon.\n\nCall {{Customer Support Phone Number}} or write to me@x.org.",
        {"order_id": "12345"},
        stats,
    )
    assert instruction == "where is order 12345? call me on [PHONE]"
    assert reply == "Order {order_id} ships soon. Call our customer support phone line or write to [EMAIL]."
    assert stats.counts["entity_value_to_placeholder:order_id"] == 1


@pytest.mark.parametrize(
    "text, values, expected",
    [("order {order_id}", {"order_id": "7"}, "order 7"), ("hi {person_name}", {}, "hi {person_name}")],
)
def test_fill_slots(text: str, values, expected: str) -> None:
    assert fill_slots(text, values) == expected
