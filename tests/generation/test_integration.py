"""A real Rasa agent (the mini bot, trained in-session) answering through the GPT-2 NLG.

The response model is the tiny GPT-2 trained in-session on the mini bot's replies
(``helpers.mini_bot.REPLIES``): it writes a reply per intent that differs from the domain's
template, so a generated reply is told apart from the templated one by its text alone.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from typing import Any, Optional

import pytest

from helpers.mini_bot import REPLIES, nlg_endpoint, use_nlg
from nebras_bot.generation.generator import ResponseGenerator
from nebras_bot.generation.settings import GenerationSettings
from nebras_bot.monitoring import metrics
from nebras_bot.nlg import FALLBACK_REASON, GENERATED, GPT2NaturalLanguageGenerator

# Generous: the machine is shared; the timeout test sets its own short limit.
TEST_TIMEOUT_S = 60.0


def make_generator(loaded: Any, **overrides: Any) -> ResponseGenerator:
    settings = GenerationSettings(torch_threads=1, max_new_tokens=24, timeout_s=TEST_TIMEOUT_S, **overrides)
    return ResponseGenerator(loaded, settings)


def install(agent: Any, generator: Any, **options: Any) -> GPT2NaturalLanguageGenerator:
    options.setdefault("timeout", TEST_TIMEOUT_S)
    nlg = GPT2NaturalLanguageGenerator(nlg_endpoint(**options), generator=generator)
    use_nlg(agent, nlg)
    return nlg


def fallback_count(reason: str) -> float:
    return metrics.FALLBACKS.labels(reason=reason)._value.get()


async def say(agent: Any, text: str, sender: str) -> list:
    return await agent.handle_text(text, sender_id=sender)


async def bot_events(agent: Any, sender: str) -> list:
    from rasa.shared.core.events import BotUttered

    tracker = await agent.tracker_store.retrieve(sender)
    return [event for event in tracker.events if isinstance(event, BotUttered)]


def sender() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def generator(tiny_loaded):
    generator = make_generator(tiny_loaded)
    yield generator
    generator.close()


@pytest.fixture
def agent(mini_agent, generator):
    install(mini_agent, generator)
    return mini_agent


# --------------------------------------------------------------------------- generated turns


async def test_out_of_scope_message_gets_the_policys_generated_reply(agent):
    who = sender()
    messages = await say(agent, "tell me a joke", who)
    assert [m["text"] for m in messages] == [REPLIES["out_of_scope"]]
    tracker = await agent.tracker_store.retrieve(who)
    executed = [e for e in tracker.events if getattr(e, "action_name", None) == "utter_generative"]
    assert executed and "GenerativeResponsePolicy" in executed[-1].policy  # beat RulePolicy's rule
    event = (await bot_events(agent, who))[-1]
    assert event.metadata[GENERATED] is True and event.metadata["model_version"] == "tiny-test-1"


async def test_intent_without_story_or_rule_gets_a_generated_reply(agent):
    messages = await say(agent, "what delivery options do you have", sender())
    assert [m["text"] for m in messages] == [REPLIES["delivery_options"]]


async def test_rephrased_turn_replaces_the_template_and_keeps_buttons(agent):
    who = sender()
    greeting = await say(agent, "hello", who)
    assert [m["text"] for m in greeting] == [REPLIES["greet"]]  # not "Hello! How can I help you?"
    thanks = await say(agent, "thank you", who)
    assert thanks[0]["text"] == REPLIES["thank_you"]
    assert thanks[0]["buttons"][0]["payload"] == "/track_order"  # Rasa's template parts survive


async def test_response_without_opt_in_stays_templated(agent, generator):
    calls = []
    original = generator.reply
    generator.reply = lambda *a, **k: calls.append(a) or original(*a, **k)
    who = sender()
    messages = await say(agent, "bye", who)
    assert [m["text"] for m in messages] == ["Goodbye!"]
    assert calls == []  # the model was not even asked
    assert (await bot_events(agent, who))[-1].metadata[GENERATED] is False


async def test_rephrase_all_asks_the_model_for_responses_without_opt_in(mini_agent, generator):
    install(mini_agent, generator, rephrase_all=True)
    calls = []
    original = generator.reply
    generator.reply = lambda *a, **k: calls.append(a) or original(*a, **k)
    messages = await say(mini_agent, "bye", sender())
    assert len(calls) == 1
    # The tiny model never saw a goodbye: whatever it writes is sent or refused by the guard,
    # the reply is never empty.
    assert messages and messages[0]["text"].strip()


# --------------------------------------------------------------------------- multi-turn context


async def test_order_id_from_turn_one_reaches_the_generated_reply_in_turn_three(agent):
    who = sender()
    first = await say(agent, "my order is 48213", who)
    assert first[0]["text"] == "Thanks, I noted order 48213."  # templated turn, sets the slot
    second = await say(agent, "thanks", who)
    assert second[0]["text"] == REPLIES["thank_you"]
    third = await say(agent, "where is my order", who)  # no id in this message
    assert third[0]["text"] == "Your order 48213 is on its way."
    event = (await bot_events(agent, who))[-1]
    assert event.metadata[GENERATED] is True  # the model wrote it (its {order_id} filled from turn 1)


async def test_reply_needing_an_unknown_order_id_falls_back_to_the_conditional_template(mini_agent, tiny_loaded):
    generator = make_generator(tiny_loaded, steer_placeholders=False)  # the model may write "{order_id}"
    install(mini_agent, generator, rephrase_all=True)  # the conditional variation has no opt-in of its own
    agent, who = mini_agent, sender()
    before = fallback_count("missing_placeholder")
    messages = await say(agent, "where is my order", who)
    generator.close()
    # No order id anywhere: the model's "{order_id}" cannot be filled, Rasa's conditional
    # variation for an empty slot is sent instead.
    assert [m["text"] for m in messages] == ["Which order is it about?"]
    assert (await bot_events(agent, who))[-1].metadata[FALLBACK_REASON].startswith("missing_placeholder")
    assert fallback_count("missing_placeholder") == before + 1


async def test_steered_reply_never_has_a_hole_and_an_invented_id_still_falls_back(mini_agent, generator):
    install(mini_agent, generator, rephrase_all=True)
    agent, who = mini_agent, sender()
    messages = await say(agent, "where is my order", who)
    # Steering bans "{" (no value to fill): the tiny model, trained to write "{order_id}" here,
    # writes a made-up number instead, which the guard refuses: the conditional template again.
    reason = (await bot_events(agent, who))[-1].metadata[FALLBACK_REASON]
    assert [m["text"] for m in messages] == ["Which order is it about?"]
    assert reason.startswith("unknown_") and "{" not in reason


# --------------------------------------------------------------------------- fallbacks


async def test_guard_rejects_an_invented_number(agent):
    who = sender()
    messages = await say(agent, "where is my invoice", who)
    assert [m["text"] for m in messages] == ["Your invoice is in your account."]
    reason = (await bot_events(agent, who))[-1].metadata[FALLBACK_REASON]
    assert reason.startswith(("unknown_id", "unknown_number")) and "99999" in reason


async def test_guard_rejects_a_forged_role_line(agent):
    who = sender()
    before = fallback_count("role_marker")
    messages = await say(agent, "are you a bot", who)
    assert [m["text"] for m in messages] == ["I am a bot."]
    assert (await bot_events(agent, who))[-1].metadata[FALLBACK_REASON] == "role_marker"
    assert fallback_count("role_marker") == before + 1


async def test_exception_in_the_model_sends_the_template(agent, generator, caplog):
    def broken(*args: Any, **kwargs: Any):
        raise RuntimeError("CUDA out of memory (simulated)")

    generator.decoder.complete = broken
    who = sender()
    before = fallback_count("error")
    with caplog.at_level(logging.ERROR):
        messages = await say(agent, "hello", who)
    assert [m["text"] for m in messages] == ["Hello! How can I help you?"]
    assert (await bot_events(agent, who))[-1].metadata[FALLBACK_REASON] == "error: RuntimeError"
    assert fallback_count("error") == before + 1
    assert "generation failed" in caplog.text


async def test_timeout_sends_the_template_without_waiting_for_the_model(mini_agent, tiny_loaded):
    generator = make_generator(tiny_loaded)
    release = threading.Event()
    original = generator.decoder.complete

    def slow(*args: Any, **kwargs: Any):
        release.wait(timeout=10)
        return original(*args, **kwargs)

    generator.decoder.complete = slow
    install(mini_agent, generator, timeout=0.3)
    who = sender()
    before = fallback_count("timeout")
    started = time.perf_counter()
    try:
        messages = await say(mini_agent, "hello", who)
        elapsed = time.perf_counter() - started
    finally:
        release.set()
        generator.close()
    assert [m["text"] for m in messages] == ["Hello! How can I help you?"]
    assert elapsed < 8  # did not wait for the stuck model (released only after the reply)
    assert (await bot_events(mini_agent, who))[-1].metadata[FALLBACK_REASON] == "timeout"
    assert fallback_count("timeout") == before + 1


async def test_missing_model_still_starts_and_answers_with_templates(mini_agent, tmp_path, caplog):
    before = fallback_count("no_model")
    with caplog.at_level(logging.ERROR):
        nlg = GPT2NaturalLanguageGenerator(nlg_endpoint(model=str(tmp_path / "nlg" / "current")))
    assert not nlg.generator.available
    assert "no response model" in caplog.text and "templated replies only" in caplog.text
    use_nlg(mini_agent, nlg)
    who = sender()
    assert [m["text"] for m in await say(mini_agent, "hello", who)] == ["Hello! How can I help you?"]
    out_of_scope = await say(mini_agent, "tell me a joke", who)
    assert out_of_scope[0]["text"] == "Sorry, I can only help with orders and invoices."
    assert (await bot_events(mini_agent, who))[-1].metadata[FALLBACK_REASON] == "no_model"
    assert fallback_count("no_model") == before + 2


# --------------------------------------------------------------------------- channels and concurrency


class RecordingGenerator(ResponseGenerator):
    """The real generator, remembering the contexts it was asked to reply to."""

    def __init__(self, *args: Any, delay: Optional[threading.Event] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.contexts: list = []
        self.delay = delay
        self.finished_at: Optional[float] = None

    def reply(self, context, template=None, values=None, time_limit=None):
        self.contexts.append(context)
        if self.delay is not None:
            assert self.delay.wait(timeout=20), "the other conversation was never answered"
        result = super().reply(context, template, values, time_limit)
        self.finished_at = time.perf_counter()
        return result


async def test_output_channel_name_reaches_the_generator(mini_agent, tiny_loaded):
    from rasa.core.channels.channel import CollectingOutputChannel, UserMessage

    class TelegramLike(CollectingOutputChannel):
        @classmethod
        def name(cls) -> str:
            return "telegram"

    generator = RecordingGenerator(tiny_loaded, make_generator(tiny_loaded).settings)
    install(mini_agent, generator)
    channel = TelegramLike()
    await mini_agent.handle_message(UserMessage("hello", channel, sender(), input_channel="telegram"))
    assert channel.messages[0]["text"] == REPLIES["greet"]
    assert [c.channel for c in generator.contexts] == ["telegram"]
    generator.close()


async def test_two_rest_conversations_are_answered_while_a_slow_generation_runs(mini_agent, tiny_loaded):
    from helpers.rest import rest_client, send

    release = threading.Event()
    generator = RecordingGenerator(tiny_loaded, make_generator(tiny_loaded).settings, delay=release)
    install(mini_agent, generator)

    async with rest_client(mini_agent) as client:
        slow = asyncio.create_task(send(client, sender(), "tell me a joke"))  # waits in the worker thread
        for _ in range(1200):  # the slow generation has started (at most a minute on a busy machine)
            if generator.contexts or slow.done():
                break
            await asyncio.sleep(0.05)
        assert generator.contexts and not slow.done()
        fast = await asyncio.wait_for(send(client, sender(), "bye"), timeout=30)  # templated turn
        fast_done = time.perf_counter()
        assert not slow.done() and generator.finished_at is None  # still generating
        release.set()
        slow_reply = await asyncio.wait_for(slow, timeout=30)
    assert [m["text"] for m in fast] == ["Goodbye!"]
    assert [m["text"] for m in slow_reply] == [REPLIES["out_of_scope"]]
    assert generator.finished_at > fast_done
    assert [c.channel for c in generator.contexts] == ["collector"]  # the REST channel's output channel
    generator.close()
