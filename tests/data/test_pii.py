"""Table-driven tests for the spaCy-rule PII scrubber."""
from __future__ import annotations

import pytest

from nebras_bot.data.pii import classify_number, contains_pii, iban_ok, luhn_ok, scrub

SCRUB_CASES = [
    # (input, expected)
    ("write to john.doe+x@example.co.uk!", "write to [EMAIL]!"),
    ("mail: a@b.io and c.d@e-f.org", "mail: [EMAIL] and [EMAIL]"),
    ("call +44 20 7946 0958 now", "call [PHONE] now"),
    ("call (555) 123-4567.", "call [PHONE]."),
    ("call 555-123-4567", "call [PHONE]"),
    ("call 555.123.4567", "call [PHONE]"),
    ("call +15551234567", "call [PHONE]"),
    ("visa 4111 1111 1111 1111 ok", "visa [CARD] ok"),
    ("visa 4111-1111-1111-1111 ok", "visa [CARD] ok"),
    ("visa 4111111111111111 ok", "visa [CARD] ok"),
    ("amex 3782 822463 10005 ok", "amex [CARD] ok"),
    ("iban DE89 3704 0044 0532 0130 00 please", "iban [IBAN] please"),
    ("iban GB82WEST12345698765432.", "iban [IBAN]."),
    # Two numbers side by side, no word between them: each is still found.
    ("call +44 7911 123456 4111 1111 1111 1111 now", "call [PHONE] [CARD] now"),
    ("4111 1111 1111 1111 +44 7911 123456", "[CARD] [PHONE]"),
    ("+1 (555) 123-4567 5500-0000-0000-0004 ok", "[PHONE] [CARD] ok"),
    ("on 2024-01-05 4111 1111 1111 1111", "on 2024-01-05 [CARD]"),
    # Not PII: order ids, amounts, dates, invoice numbers, short numbers, failed checksums.
    ("where is order 113542617735902?", "where is order 113542617735902?"),
    ("order 732201349959 please", "order 732201349959 please"),
    ("refund of $120.50", "refund of $120.50"),
    ("refund of 1,250.00 dollars", "refund of 1,250.00 dollars"),
    ("delivered on 2023-10-05", "delivered on 2023-10-05"),
    ("invoice #00108", "invoice #00108"),
    ("invoice INV-12345678", "invoice INV-12345678"),
    ("card 4111 1111 1111 1112 mistyped", "card [CARD] mistyped"),
    ("numbers 12345 67890 12345 67890 12", "numbers 12345 67890 12345 67890 12"),
    ("iban DE89 3704 0044 0532 0130 01 mistyped", "iban [IBAN] mistyped"),
    ("code DE89370400440532013001 fails mod-97", "code DE89370400440532013001 fails mod-97"),
    ("", ""),
    ("already [EMAIL] and [PHONE]", "already [EMAIL] and [PHONE]"),
]


@pytest.mark.parametrize("text, expected", SCRUB_CASES)
def test_scrub(text: str, expected: str) -> None:
    assert scrub(text) == expected


@pytest.mark.parametrize("text", [case[1] for case in SCRUB_CASES])
def test_scrub_is_idempotent(text: str) -> None:
    assert scrub(scrub(text)) == scrub(text)


@pytest.mark.parametrize(
    "digits, ok",
    [("4111111111111111", True), ("4111111111111112", False), ("378282246310005", True), ("12a4", False)],
)
def test_luhn(digits: str, ok: bool) -> None:
    assert luhn_ok(digits) is ok


@pytest.mark.parametrize(
    "text, ok",
    [("DE89370400440532013000", True), ("DE89 3704 0044 0532 0130 00", True),
     ("DE89370400440532013001", False), ("XX00", False)],
)
def test_iban_check(text: str, ok: bool) -> None:
    assert iban_ok(text) is ok


@pytest.mark.parametrize(
    "text, kind",
    [("4111 1111 1111 1111", "[CARD]"), ("555-123-4567", "[PHONE]"), ("5551234567", None),
     ("2023-10-05", None), ("120.50", None), ("+4915112345678", "[PHONE]")],
)
def test_classify_number(text: str, kind) -> None:
    assert classify_number(text) == kind


def test_contains_pii() -> None:
    assert contains_pii("ping me at x@y.com")
    assert not contains_pii("where is my order 12345")
