"""Placeholder filling: table-driven rules plus properties."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nebras_bot.entities import slot_for_name
from nebras_bot.generation.placeholders import fill, merge_values, missing, placeholders_in

CASES = [
    ("Your order {order_id} is on its way.", {"order_id": "12345"}, "Your order 12345 is on its way."),
    ("Order { order_id } shipped.", {"order_id": "A1"}, "Order A1 shipped."),
    ("{person_name}, order {order_id}.", {"person_name": "Jane", "order_id": 7}, "Jane, order 7."),
    ("No placeholders here.", {}, "No placeholders here."),
    ("Order {order_id} for {email}.", {"order_id": "1"}, None),  # one missing -> rejected
    ("Order {order_id}.", {"order_id": None}, None),
    ("Order {order_id}.", {"order_id": "   "}, None),
    ("Order {order_id}.", {"order_id": {"nested": 1}}, None),
    ("Order {order_id}.", {"order_id": True}, None),
    ("Cities: {delivery_city}.", {"delivery_city": ["Oslo", "", "Rome"]}, "Cities: Oslo, Rome."),
    ("Hi {unknown_thing}", {}, None),
    ('JSON {"a": 1} stays', {}, 'JSON {"a": 1} stays'),
    ("Value {order_id}", {"order_id": "{email}"}, "Value {email}"),  # values are not filled again
    # another name of a slot (what a partly trained model writes) is filled from that slot
    ("Order {order_number} shipped.", {"order_id": "48213"}, "Order 48213 shipped."),
    ("Invoice {invoice_number}.", {"invoice_id": "#85632"}, "Invoice #85632."),
    ("Order {order_number}.", {"order_number": "1", "order_id": "2"}, "Order 1."),  # its own value first
    ("Order {order_number}.", {}, None),
    ("Your {account_name} account.", {"account_type": "pro"}, None),  # no slot's name: needs its own value
    ("We ship to {delivery_city}.", {"delivery_country": "Canada"}, None),  # a different slot
    # a Markdown-escaped underscore (the trained models write "{order\\_number}") is the same name
    ("Order {order\\_number} shipped.", {"order_id": "48213"}, "Order 48213 shipped."),
    ("Your {account\\_type} plan.", {"account_type": "Pro"}, "Your Pro plan."),
    ("Your {account\\_type} plan.", {}, None),
]


@pytest.mark.parametrize("text, values, expected", CASES)
def test_fill(text, values, expected):
    assert fill(text, values) == expected


def test_missing_names_every_hole():
    assert missing("{order_id} {email} {order_id}", {"email": "a@b.c"}) == ["order_id", "order_id"]
    assert placeholders_in("{a} and {b_2}") == ["a", "b_2"]


def test_merge_values_keeps_usable_values():
    merged = merge_values({"order_id": "1", "email": "x@y.z"}, {"order_id": None, "email": ""}, {"city": "Oslo"})
    assert merged == {"order_id": "1", "email": "x@y.z", "city": "Oslo"}


names = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)
values = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20).filter(
    lambda v: v.strip() != ""
)


@given(st.dictionaries(names, values, min_size=1, max_size=5), st.text(max_size=30).filter(lambda t: "{" not in t and "}" not in t))
def test_fill_with_all_values_leaves_no_placeholder_and_inserts_values(mapping, filler):
    text = filler + " " + " ".join("{" + name + "}" for name in mapping)
    result = fill(text, mapping)
    assert result is not None
    assert result.startswith(filler)
    for value in mapping.values():
        assert value.strip() in result


@given(st.dictionaries(names, values, max_size=4), names)
def test_fill_rejects_whenever_a_name_lacks_a_value(mapping, extra):
    mapping.pop(extra, None)
    mapping.pop(slot_for_name(extra), None)  # nor a value under the slot it names ("order" -> order_id)
    assert fill("Hello {" + extra + "}", mapping) is None
