"""Output guard: one table row per rule, both the rejection and the look-alike that must pass."""
from __future__ import annotations

import pytest

from nebras_bot.generation import guard
from nebras_bot.generation.guard import check, rule_of

CONVERSATION = [
    "Hi, where is my order 12345? My email is jane.doe@example.com",
    "Your order 12345 is on its way. The refund of $25.00 was sent. Call 555-123-4567 or see www.shop.example.com/help",
    "My ticket is TCK-4F2A91 and invoice INV-2024-77",
]

CASES = [
    # (reply, expected rule or None)
    ("", guard.EMPTY),
    ("   \n ", guard.EMPTY),
    ("Ok", guard.TOO_SHORT),
    ("?!", guard.TOO_SHORT),
    ("...", guard.TOO_SHORT),
    ("Sure.", None),
    ("x" * 601, guard.TOO_LONG),
    ("Fine. " * 20, guard.REPETITION),  # also too repetitive: checked after length
    ("Hello <|user|> give me a refund", guard.ROLE_MARKER),
    ("Done.<|end|>", guard.ROLE_MARKER),
    ("Thanks < | agent | > ok", guard.ROLE_MARKER),
    ("Sure thing.\nUser: and now refund me", guard.ROLE_MARKER),
    ("<|system> I want to change the shipping address.", guard.ROLE_MARKER),  # SmolLM2 wrote this
    ("wanna see the invoice <|user> you can view all your invoices", guard.ROLE_MARKER),
    ("Done. agent|> and more", guard.ROLE_MARKER),
    ("<system>You are a bot</system>", guard.ROLE_MARKER),
    ("Use the menu Account > Orders | Returns.", None),
    ("That is a fucking delay, sorry.", guard.PROFANITY),
    ("Please don't be stupid about it.", guard.PROFANITY),
    ("I understand the class of your account.", None),  # 'ass' inside a word is not profanity
    ("I can help I can help I can help I can help I can help with that.", guard.REPETITION),
    ("Thanks thanks thanks for waiting.", guard.REPETITION),
    ("Your order is ready. Your order is ready.", guard.REPETITION),
    ("Your orderorder_id} is on its way.", guard.PLACEHOLDER_RESIDUE),  # a model kept from writing "{"
    ("Your order {order_id} is on its way.", guard.PLACEHOLDER_RESIDUE),  # never filled
    ("Please quote your invoice_number when you call.", guard.PLACEHOLDER_RESIDUE),
    ("Open the account settings and choose Billing.", None),
    ("Write to jane_doe@example.com", guard.UNKNOWN_EMAIL),  # an email's underscore is no residue
    ("Your orderorder_idid is on its way.", guard.PLACEHOLDER_RESIDUE),
    ("Quote your order\\_number, please.", guard.PLACEHOLDER_RESIDUE),
    ("Set the field first_name to your name.", guard.PLACEHOLDER_RESIDUE),  # not in the conversation
    ("the the a the a the a the a the a the a the", guard.REPETITION),
    ("I have checked and your order is on its way to you now.", None),
    ("Your order 12345 is on its way.", None),
    ("Your order 98765 is on its way.", guard.UNKNOWN_ID),
    ("We found 98765 parcels.", guard.UNKNOWN_NUMBER),
    ("Your order #12345 ships today.", None),
    ("Your order ORD-12345 ships today.", None),
    ("Your order ORD-55555 ships today.", guard.UNKNOWN_ID),
    ("Your ticket TCK-4F2A91 is open.", None),
    ("Your ticket tck-4f2a91 is open.", None),
    ("Your ticket TCK-000001 is open.", guard.UNKNOWN_ID),
    ("Invoice INV-2024-77 is attached.", None),
    ("Invoice INV-2024-78 is attached.", guard.UNKNOWN_ID),
    ("Use code A9B8C7 at checkout.", guard.UNKNOWN_ID),
    ("We will email jane.doe@example.com shortly.", None),
    ("We will email JANE.DOE@example.com shortly.", None),
    ("Write to support@evil.example.org please.", guard.UNKNOWN_EMAIL),
    ("See www.shop.example.com/help for details.", None),
    ("See https://phish.example.net/login now.", guard.UNKNOWN_URL),
    ("Visit refunds-now.com today.", guard.UNKNOWN_URL),
    ("Your refund of $25.00 was sent.", None),
    ("Your refund of $25 was sent.", None),
    ("Your refund of 25 USD was sent.", None),
    ("Your refund of $40.00 was sent.", guard.UNKNOWN_PRICE),
    ("Your refund of 99 euros was sent.", guard.UNKNOWN_PRICE),
    ("Call us at 555-123-4567.", None),
    ("Call us at (555) 123 4567.", None),
    ("Call us at +1 800 222 3333.", guard.UNKNOWN_PHONE),
    ("It arrives in 3 days.", guard.UNKNOWN_NUMBER),
    ("It arrives in 3.5 days.", guard.UNKNOWN_NUMBER),
]


@pytest.mark.parametrize("reply, expected", CASES, ids=[f"{i}-{c[1]}" for i, c in enumerate(CASES)])
def test_guard_rules(reply, expected):
    reason = check(reply, allowed_texts=CONVERSATION)
    if expected is None:
        assert reason is None, reason
    else:
        assert reason is not None and rule_of(reason) == expected, reason


def test_reason_names_the_offending_value():
    assert check("We found 98765 parcels.", allowed_texts=CONVERSATION) == "unknown_number: 98765"
    assert check("Your order 98765 is late.", allowed_texts=CONVERSATION) == "unknown_id: order 98765"
    # a snake_case word the customer wrote may be quoted back
    assert check("Your field first_name is set.", allowed_texts=["my first_name is wrong"]) is None
    assert check("Mail x@y.org", allowed_texts=[]) == "unknown_email: x@y.org"


def test_template_numbers_are_allowed():
    template = "Refunds take 5-7 business days."
    assert check("Your refund takes 5-7 business days.", allowed_texts=[template]) is None
    assert check("Your refund takes 5-7 business days.", allowed_texts=[]) is not None


def test_limits_are_configurable():
    assert check("Sure.", allowed_texts=[], min_chars=10).startswith(guard.TOO_SHORT)
    assert check("A fine reply.", allowed_texts=[], max_chars=5).startswith(guard.TOO_LONG)
    text = "we will look into it and we will look into it"
    assert check(text, allowed_texts=[], max_repeated_ngram=1).startswith(guard.REPETITION)


def test_a_phrase_three_times_in_a_long_reply_is_fine_four_times_is_repetition():
    """Bitext replies repeat a phrase three times or more in 3.6 % of the training rows; the default
    lets three through and still refuses a fourth."""
    parts = [
        "I understand your concern about the early termination charges on your plan.",
        "To review the early termination charges, log in and open the Billing section.",
        "Our team can explain how the early termination charges were calculated.",
        "If the early termination charges look wrong, reply here and we will check them.",
    ]
    assert check(" ".join(parts[:3]), allowed_texts=[]) is None
    assert check(" ".join(parts), allowed_texts=[]) == f"{guard.REPETITION}: 'the early termination charges'"


CUTS = [
    # (reply, what is left before the repetition; None: nothing to keep)
    ("Your order ships soon. Your order ships soon.", "Your order ships soon."),
    ("Your order is packed. It is very very very fast.", "Your order is packed."),
    # the list starts again: cut after "3. ...", never after the dangling "2."
    ("Steps: 1. Log in to your account. 2. Open the Orders page. 3. Pick the order. 2. Open the Orders page.",
     "Steps: 1. Log in to your account. 2. Open the Orders page. 3. Pick the order."),
    ("Here is how. You can ask for a refund online, you can ask for a refund by mail. And you can ask for "
     "a refund here, and you can ask for a refund there.", "Here is how. You can ask for a refund online, you can "
     "ask for a refund by mail."),
    ("Sorry sorry sorry for the wait.", None),  # the loop starts in the first sentence
    ("Fine. " * 20, None),  # the whole reply
    ("A fine reply. Nothing repeats here.", None),  # no repetition: nothing to cut
    ("", None),
]


@pytest.mark.parametrize("reply, expected", CUTS)
def test_cut_repetition_keeps_the_sentences_before_the_loop(reply, expected):
    assert guard.cut_repetition(reply) == expected
    if expected is not None:
        assert check(expected, allowed_texts=[]) is None


def test_slot_values_count_as_allowed_text():
    assert check("Your order A1B2C3 ships to Paris.", allowed_texts=["A1B2C3", "Paris"]) is None
    assert check("Your order A1B2C3 ships to Paris.", allowed_texts=["Paris"]).startswith(guard.UNKNOWN_ID)


# List enumerators and step numbers are structure, not facts; every other number is still checked.
# Rows taken from (or shaped like) Bitext-style replies: "...the process: 1. Log in ... 2. Go to ...".
# (CONVERSATION allows 2, 4, 25, 77, 91, 555, 2024 ...: the rejected rows use other numbers.)
LIST_NUMBER_CASES = [
    # allowed
    ("Here's how to cancel: 1. Log in to your account. 2. Open Orders. 3. Click Cancel.", None),
    ("Please follow these steps:\n1. Log in.\n2. Open Orders.", None),
    ("Steps:\n1) Log in\n2) Pay", None),
    ("You can (1) log in and (2) open Orders.", None),
    ('1. Open "Account Settings." 2. Click "Delete Account."', None),  # after a closing quote
    ("Here's how you can place an order: 1. Browse our website.", None),  # not 'order: 1', an order id
    ("1. Log in. 2. Open Orders. Then: 1. Pick the item. 2. Click Return.", None),  # a second list
    ("Go to step 3 and click Save.", None),
    ("Step 2: open the Orders page.", None),
    ("Your order 12345 ships soon: 1. Track it under Orders. 2. Wait for the email.", None),
    (" ".join(f"{n}. Do step." for n in range(1, 21)), None),  # bounded: up to 20
    # still rejected
    ("1. Log in. 2. Open Orders. 6. Click Cancel.", guard.UNKNOWN_NUMBER),  # out of sequence
    ("7. Call us now.", guard.UNKNOWN_NUMBER),  # a lone number is not a list
    ("Please wait. 3. Click here.", guard.UNKNOWN_NUMBER),  # a list starts at 1
    ("Log in. Version 1. Works.", guard.UNKNOWN_NUMBER),  # after a word, not a boundary
    ("Your order 4. Then go.", guard.UNKNOWN_ID),
    ("Go to step 30 now.", guard.UNKNOWN_NUMBER),  # over the bound
    (" ".join(f"{n}. Do step." for n in range(1, 22)), guard.UNKNOWN_NUMBER),  # 21 is over the bound
    ("Steps: 1. Log in. 2. Pay $40.00 at checkout.", guard.UNKNOWN_PRICE),
    ("Steps: 1. Log in. 2. Call 1-800-555-0199.", guard.UNKNOWN_PHONE),
    ("Steps: 1. Log in. 2. Enter order 98765.", guard.UNKNOWN_ID),
    ("Steps: 1. Log in. 2. Wait 3 days.", guard.UNKNOWN_NUMBER),
    ("Our team is available 24/7 to help.", guard.UNKNOWN_NUMBER),  # a claim about the business
    ("Refunds take 3 to 10 business days.", guard.UNKNOWN_NUMBER),  # a duration is a claim too
    ("It arrives on the 3rd.", guard.UNKNOWN_ID),  # ordinals and dates stay facts (3rd reads as a code)
]


@pytest.mark.parametrize("reply, expected", LIST_NUMBER_CASES, ids=[f"{i}-{c[1]}" for i, c in enumerate(LIST_NUMBER_CASES)])
def test_list_enumerators_are_not_facts(reply, expected):
    reason = check(reply, allowed_texts=CONVERSATION)
    if expected is None:
        assert reason is None, reason
    else:
        assert reason is not None and rule_of(reason) == expected, reason


def test_list_number_spans_are_the_digits_only():
    text = "Do this: 1. Log in. 2) Pay. Then step 3."
    assert [text[a:b] for a, b in guard.list_number_spans(text)] == ["1", "2", "3"]
