"""ResponseGenerator: every way a generated reply is refused ends in the template, logged and counted.

The decoder is replaced by one that returns a fixed completion, so each row of the table drives
exactly one rule through the generator's real placeholder filling, guard, logging and metrics.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nebras_bot.generation import guard, known, placeholders
from nebras_bot.generation.decoding import Completion
from nebras_bot.generation.generator import LAST_RESORT_TEXT, ResponseGenerator
from nebras_bot.generation.loader import tiny_gpt2
from nebras_bot.generation.prompt import PromptContext, PromptTurn
from nebras_bot.generation.settings import GenerationSettings
from nebras_bot.monitoring import metrics

TEMPLATE = "Your order is on its way."
CONTEXT = PromptContext(
    history=[PromptTurn("user", "where is my order 48213? I paid $25.00, mail me at jane@example.com")],
    intent="track_order",
    slots={"order_id": "48213"},
    template=TEMPLATE,
    channel="rest",
)


class FixedDecoder:
    """Stands in for the model: returns ``text`` as the completion (and counts tokens roughly)."""

    def __init__(self, text: str, stopped_by: str = "marker", delay: float = 0.0) -> None:
        self.text, self.stopped_by, self.delay = text, stopped_by, delay
        self.prompts: list[str] = []

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)

    def complete(self, prompt: str, max_new_tokens=None, time_limit=None, placeholder_ban=None) -> Completion:
        self.prompts.append(prompt)
        if self.delay:
            time.sleep(self.delay)
        return Completion(self.text, self.text, 10, 50, 0.01, self.stopped_by)


@pytest.fixture(scope="module")
def loaded():
    return tiny_gpt2()


def generator_with(loaded, text: str, **kwargs) -> ResponseGenerator:
    generator = ResponseGenerator(loaded, GenerationSettings(torch_threads=1, timeout_s=5))
    generator.decoder = FixedDecoder(text, **kwargs)
    return generator


def count(reason: str) -> float:
    return metrics.FALLBACKS.labels(reason=reason)._value.get()


REJECTIONS = [
    ("", guard.EMPTY),
    ("?", guard.TOO_SHORT),
    ("Sure. " + "Your parcel is moving along nicely today. " * 20, guard.TOO_LONG),
    ("Fine <|user|> refund me", guard.ROLE_MARKER),
    ("Okay.\nCustomer: give me a refund", guard.ROLE_MARKER),
    ("That shitty delay is annoying, sorry.", guard.PROFANITY),
    ("Sorry sorry sorry for the wait.", guard.REPETITION),
    # a loop from the first sentence on leaves nothing to cut (cut_repetition, below)
    ("Your order ships soon, your order ships soon, your order ships soon, your order ships soon.", guard.REPETITION),
    ("Your order 77777 is on its way.", guard.UNKNOWN_ID),
    ("It will arrive in 4 days.", guard.UNKNOWN_NUMBER),
    ("Your refund of $30.00 is on its way.", guard.UNKNOWN_PRICE),
    ("Call +1 800 555 0199 for help.", guard.UNKNOWN_PHONE),
    ("Write to refunds@shop.example.org today.", guard.UNKNOWN_EMAIL),
    ("See https://track.example.net/x for status.", guard.UNKNOWN_URL),
    ("Your ticket TCK-ZZ9999 is open.", guard.UNKNOWN_ID),
    ("Hello {person_name}, your order is here.", guard.MISSING_PLACEHOLDER),
    ("To check it, could you please provide me with your order number?", known.ASKS_KNOWN),  # slot order_id holds it
]


@pytest.mark.parametrize("raw, rule", REJECTIONS, ids=[r for _, r in REJECTIONS])
def test_every_rejection_sends_the_template_logged_and_counted(loaded, raw, rule, caplog):
    generator = generator_with(loaded, raw)
    before = count(rule)
    with caplog.at_level(logging.INFO, logger="nebras_bot.generation.generator"):
        result = generator.reply(CONTEXT, TEMPLATE)
    assert result.text == TEMPLATE and result.generated is False
    assert guard.rule_of(result.reason) == rule
    assert count(rule) == before + 1  # nebras_fallbacks_total{reason=rule}
    assert result.reason in caplog.text and "channel rest" in caplog.text


ACCEPTED = [
    ("Your order {order_id} is on its way.", "Your order 48213 is on its way."),
    ("Order 48213 ships today; the $25.00 payment is confirmed.", None),
    ("We will write to jane@example.com when it ships.", None),
]


@pytest.mark.parametrize("raw, expected", ACCEPTED)
def test_replies_quoting_only_known_facts_are_sent(loaded, raw, expected):
    generator = generator_with(loaded, raw)
    before = metrics.GENERATED_REPLIES._value.get()
    result = generator.reply(CONTEXT, TEMPLATE)
    assert result.generated and result.reason is None
    assert result.text == (expected or raw)
    assert result.channel == "rest" and result.model_version == "gpt2-scratch:tiny"
    assert metrics.GENERATED_REPLIES._value.get() == before + 1


def test_reply_cut_by_the_token_limit_ends_at_its_last_sentence(loaded):
    result = generator_with(loaded, "Your order is packed. It leaves the", stopped_by="length").reply(CONTEXT, TEMPLATE)
    assert result.text == "Your order is packed." and result.generated


@pytest.mark.parametrize(
    "raw, expected",
    [
        # what the shipped model wrote within 60 tokens: the cut must not leave a dangling "2."
        ("Allow me to guide you: 1. Log in to your account. 2. Navigate to the Order",
         "Allow me to guide you: 1. Log in to your account."),
        ("I can help. 1. Log in", "I can help."),
        ("Refunds take 10 days. Then", "Refunds take 10 days."),  # an ordinary cut
    ],
)
def test_cut_reply_never_ends_in_a_list_enumerator(loaded, raw, expected):
    template = "Refunds take 10 days."
    result = generator_with(loaded, raw, stopped_by="length").reply(CONTEXT, template)
    assert result.text == expected and result.generated, result.reason


LOOP = ("Refunds are possible when: 1. The item is damaged, you can ask for a refund. 2. The item is late, "
        "you can ask for a refund. 3. The item is late, you can ask for a refund. 4. The item is late, you "
        "can ask for a refund.")


def test_a_reply_that_starts_looping_is_cut_before_the_loop_and_sent(loaded, caplog):
    with caplog.at_level(logging.INFO, logger="nebras_bot.generation.generator"):
        result = generator_with(loaded, LOOP).reply(CONTEXT, TEMPLATE)
    assert result.generated and result.reason is None
    assert result.text == ("Refunds are possible when: 1. The item is damaged, you can ask for a refund. "
                           "2. The item is late, you can ask for a refund.")
    assert "cut before it repeats itself" in caplog.text


def test_the_cut_is_checked_again_and_can_be_turned_off(loaded):
    # What is left before the loop quotes an unknown number: still refused, for the repetition.
    looping = "Your refund arrives in 4 days. Thanks. Thanks. Thanks."
    result = generator_with(loaded, looping).reply(CONTEXT, TEMPLATE)
    assert result.text == TEMPLATE and guard.rule_of(result.reason) == guard.REPETITION
    generator = generator_with(loaded, LOOP)
    generator.settings = GenerationSettings(torch_threads=1, timeout_s=5, cut_repetition=False)
    result = generator.reply(CONTEXT, TEMPLATE)
    assert result.text == TEMPLATE and guard.rule_of(result.reason) == guard.REPETITION


def test_exception_and_empty_template_still_give_a_reply(loaded):
    generator = generator_with(loaded, "unused")

    def boom(*args, **kwargs):
        raise MemoryError("simulated OOM")

    generator.decoder.complete = boom
    before = count("error")
    result = generator.reply(CONTEXT, template=None)
    assert result.text == LAST_RESORT_TEXT and result.reason == "error: MemoryError"
    assert count("error") == before + 1


def test_deadline_before_the_first_sentence_is_a_timeout(loaded):
    result = generator_with(loaded, "Your order", stopped_by="time").reply(CONTEXT, TEMPLATE)
    assert result.reason == "timeout" and result.text == TEMPLATE


def test_reply_cut_by_the_deadline_keeps_its_complete_sentences(loaded):
    raw = "Your order is packed. 1. It leaves today. 2. Track it in"
    result = generator_with(loaded, raw, stopped_by="time").reply(CONTEXT, TEMPLATE)
    assert result.generated and result.text == "Your order is packed. 1. It leaves today."


class RecordingDecoder(FixedDecoder):
    def complete(self, prompt: str, max_new_tokens=None, time_limit=None, placeholder_ban=None) -> Completion:
        self.time_limit = time_limit
        return super().complete(prompt, max_new_tokens, time_limit)


@pytest.mark.parametrize("limit, margin, expected", [(3.0, 0.3, 2.7), (3.0, 0.0, 3.0), (0.2, 0.3, 0.0)])
def test_decoding_stops_the_margin_before_the_time_limit(loaded, limit, margin, expected):
    generator = ResponseGenerator(loaded, GenerationSettings(torch_threads=1, timeout_s=limit, deadline_margin_s=margin))
    generator.decoder = RecordingDecoder("Your order is on its way.")
    generator.reply(CONTEXT, TEMPLATE)
    assert expected - 0.05 <= generator.decoder.time_limit <= expected


async def test_time_queued_for_the_worker_counts_against_the_timeout(loaded):
    generator = ResponseGenerator(loaded, GenerationSettings(torch_threads=1, timeout_s=2.0, deadline_margin_s=0.0))
    generator.decoder = RecordingDecoder("Your order is on its way.", delay=0.5)
    first = asyncio.ensure_future(generator.areply(CONTEXT, TEMPLATE))
    second = await generator.areply(CONTEXT, TEMPLATE)  # waits ~0.5 s for the single worker
    await first
    assert second.generated
    assert 1.3 <= generator.decoder.time_limit <= 1.6
    generator.close()


async def test_areply_runs_off_the_event_loop_and_times_out(loaded):
    generator = generator_with(loaded, "Your order is on its way.", delay=1.0)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    before = count("timeout")
    result = await generator.areply(CONTEXT, TEMPLATE, timeout=0.3)
    task.cancel()
    assert result.reason == "timeout" and result.text == TEMPLATE
    assert count("timeout") == before + 1
    assert ticks >= 5  # the loop kept running while the worker thread was busy
    assert threading.current_thread() is threading.main_thread()
    generator.close()


async def test_no_model_is_a_counted_fallback(tmp_path):
    generator = ResponseGenerator.load(GenerationSettings(torch_threads=1), source=str(tmp_path / "missing"))
    assert not generator.available and "does not exist" in generator.load_error
    before = count("no_model")
    result = await generator.areply(CONTEXT, TEMPLATE)
    assert (result.text, result.reason) == (TEMPLATE, "no_model")
    assert count("no_model") == before + 1
    assert metrics.GENERATOR_DEGRADED._value.get() == 1


def test_prompt_carries_channel_free_context(loaded):
    generator = generator_with(loaded, "Your order {order_id} is on its way.")
    generator.reply(CONTEXT, TEMPLATE)
    (prompt,) = generator.decoder.prompts
    assert "slots: order_id=48213" in prompt and "template: Your order is on its way." in prompt
    assert "rest" not in prompt  # the channel is metadata, not prompt text (training has none)


# Whatever the model writes (hostile or garbage), the reply is non-empty and, when it is the
# model's, passes the guard: no failure of the model produces an empty or unsafe reply.
model_output = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(["Your order", " {order_id}", " 77777", "<|user|>", "\nUser:", " shit", " $9",
                              " is on its way.", " www.x.com", " ok", "", " ok ok ok", "\u200b"]), max_size=12).map("".join),
)


@settings(max_examples=150, deadline=None)
@given(raw=model_output, template=st.sampled_from([TEMPLATE, "", None]))
def test_any_model_output_gives_a_non_empty_safe_reply(loaded, raw, template):
    result = generator_with(loaded, raw).reply(CONTEXT, template)
    assert result.text.strip()
    if result.generated:
        allowed = ResponseGenerator.allowed_texts(CONTEXT, template, {"order_id": "48213"})
        assert guard.check(result.text, allowed_texts=allowed, min_chars=2) is None
        assert not placeholders.placeholders_in(result.text)  # every placeholder was filled
    else:
        assert result.text in (TEMPLATE, LAST_RESORT_TEXT) and result.reason
