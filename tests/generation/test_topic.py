"""The topic check: a generated reply about another intent than the recognised one is refused."""
from __future__ import annotations

import pytest

from nebras_bot.generation import guard
from nebras_bot.generation.generator import ResponseGenerator
from nebras_bot.generation.loader import tiny_gpt2
from nebras_bot.generation.prompt import PromptContext, PromptTurn
from nebras_bot.generation.retrieval import ExemplarIndex
from nebras_bot.generation.settings import GenerationSettings
from nebras_bot.generation.topic import OFF_TOPIC, TopicCheck
from nebras_bot.monitoring import metrics

from .test_generator import FixedDecoder

TRAINING = {
    "recover_password": [
        "To reset your password, open the login page and click Forgot password. We will email you a reset link.",
        "Click Forgot password on the sign-in page, enter your email and follow the reset link we send.",
        "You can recover your password from the login screen: choose Forgot password and check your email.",
    ],
    "track_order": [
        "You can track your order in the Orders section of your account; the tracking number is in the shipping email.",
        "Open Order History, select the order and press Track to see where the parcel is.",
        "The shipping confirmation email holds the tracking link for your order.",
    ],
    "check_payment_methods": [
        "We accept credit cards, debit cards, PayPal and bank transfers.",
        "Our payment methods are Visa, Mastercard, American Express, PayPal and Apple Pay.",
        "You can pay by card, PayPal or bank transfer at checkout.",
    ],
    "get_refund": [
        "To request a refund, go to Orders, choose the item and click Request refund; refunds take 5-7 days.",
        "Refunds are issued to the original payment method once the return is received.",
        "Submit a refund request from your order page and we will process it within a week.",
    ],
}
PAIRS = [(reply, intent) for intent, replies in TRAINING.items() for reply in replies]


@pytest.fixture(scope="module")
def check() -> TopicCheck:
    return TopicCheck([r for r, _ in PAIRS], [i for _, i in PAIRS], top=1)


CASES = [
    ("Click Forgot password on the login page and we will email a reset link.", "recover_password", None),
    ("Please share your order number and open Order History to track the parcel.", "recover_password", "track_order"),
    ("We accept PayPal and credit cards at checkout.", "check_payment_methods", None),
    ("Your refund goes back to the original payment method within a week.", "check_payment_methods", "get_refund"),
    ("Open Order History and press Track.", "track_order", None),
    ("Open Order History and press Track.", "greet", None),  # an intent the index does not know: not checked
    ("Open Order History and press Track.", None, None),
]


@pytest.mark.parametrize("reply, intent, reads_as", CASES)
def test_check_table(check, reply, intent, reads_as):
    reason = check.check(reply, intent)
    if reads_as is None:
        assert reason is None
    else:
        assert reason == f"{OFF_TOPIC}: reads as {reads_as}"
        assert guard.rule_of(reason) == OFF_TOPIC


def test_top_n_is_how_many_closest_intents_may_match(check):
    reply = "Please share your order number and open Order History to track the parcel."
    rank = check.rank(reply, "recover_password")
    assert rank is not None and rank >= 1
    wider = TopicCheck([r for r, _ in PAIRS], [i for _, i in PAIRS], top=rank + 1)
    assert wider.check(reply, "recover_password") is None
    assert TopicCheck([r for r, _ in PAIRS], [i for _, i in PAIRS], top=rank).check(reply, "recover_password")


def test_from_index_needs_an_index_a_positive_top_and_several_intents():
    replies = [r for r, _ in PAIRS]
    index = ExemplarIndex(replies, replies, [i for _, i in PAIRS])
    assert isinstance(TopicCheck.from_index(index), TopicCheck)
    assert TopicCheck.from_index(None) is None
    assert TopicCheck.from_index(index, top=0) is None
    two_intents = ExemplarIndex(replies[:6], replies[:6], [i for _, i in PAIRS[:6]])
    assert TopicCheck.from_index(two_intents) is None
    with pytest.raises(ValueError, match="at least 3 intents"):
        TopicCheck(replies[:6], [i for _, i in PAIRS[:6]])


def test_generator_sends_the_template_for_an_off_topic_reply():
    replies = [r for r, _ in PAIRS]
    index = ExemplarIndex(replies, replies, [i for _, i in PAIRS])
    settings = GenerationSettings(torch_threads=1, timeout_s=5, topic_top=1)
    context = PromptContext(history=[PromptTurn("user", "I forgot my password")], intent="recover_password")
    template = "You can reset your password from the login page."
    generator = ResponseGenerator(tiny_gpt2(), settings, exemplar_index=index)
    before = metrics.FALLBACKS.labels(reason=OFF_TOPIC)._value.get()

    generator.decoder = FixedDecoder("Please share your order number and open Order History to track the parcel.")
    result = generator.reply(context, template)
    assert result.text == template and result.generated is False
    assert result.reason == f"{OFF_TOPIC}: reads as track_order"
    assert metrics.FALLBACKS.labels(reason=OFF_TOPIC)._value.get() == before + 1

    generator.decoder = FixedDecoder("Choose Forgot password on the login page and follow the reset link we email you.")
    assert generator.reply(context, template).generated is True
    generator.close()
