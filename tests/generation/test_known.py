"""known.asks_for_known: a reply that asks for a value the conversation already holds is refused."""
from __future__ import annotations

import pytest

from nebras_bot.generation.known import ASKS_KNOWN, asks_for_known

ORDER = {"order_id": "48213"}

ASKS = [
    ("Could you please provide me with the order number or tracking ID?", ORDER, "order_id"),
    ("Standard delivery takes 3-5 days. Could you share your order number with me?", ORDER, "order_id"),
    ("I'll need the order number to check its status.", ORDER, "order_id"),
    ("Kindly let us know your purchase number.", ORDER, "order_id"),
    ("May I have your order ID, please?", {"order_number": "48213"}, "order_id"),  # another name of the slot
    ("Please send us your e-mail address.", {"email": "jane@example.com"}, "email"),
    ("Could you provide the invoice number?", {"invoice_id": "INV-7"}, "invoice_id"),
    ("Thanks!\nCould you tell me your full name?", {"person_name": "Jane"}, "person_name"),
]

PASSES = [
    ("Could you please provide me with the order number?", {}),  # nothing known: asking is right
    ("Could you please provide me with the order number?", {"email": "jane@example.com"}),
    ("Please keep your order number 48213 at hand.", ORDER),  # uses the value, does not ask
    ("Could you confirm that order 48213 is the one?", ORDER),
    ("I will provide you with the tracking number once it ships.", ORDER),  # the agent gives, not asks
    ("We will send the invoice to your email address.", {"email": "jane@example.com"}),
    ("I will send you a confirmation email.", {"email": "jane@example.com"}),
    ("Enter the invoice number in the search field.", {"invoice_id": "INV-7"}),  # an instruction step
    ("Your order number is on the confirmation email.", ORDER),  # no request
    ("", ORDER),
    ("Could you provide the order number?", {"order_id": None, "email": ""}),  # no usable value
]


@pytest.mark.parametrize("reply, values, slot", ASKS)
def test_asking_for_a_known_value_is_refused(reply, values, slot):
    assert asks_for_known(reply, values) == f"{ASKS_KNOWN}: {slot}"


@pytest.mark.parametrize("reply, values", PASSES)
def test_replies_that_do_not_ask_again_pass(reply, values):
    assert asks_for_known(reply, values) is None
