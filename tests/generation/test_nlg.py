"""GPT2NaturalLanguageGenerator on its own: which responses go to the model, what Rasa's template keeps."""
from __future__ import annotations

import pytest
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from helpers.mini_bot import nlg_endpoint
from nebras_bot.generation.decoding import Completion
from nebras_bot.generation.generator import LAST_RESORT_TEXT, ResponseGenerator
from nebras_bot.generation.loader import tiny_gpt2
from nebras_bot.generation.prompt import SYSTEM
from nebras_bot.generation.settings import GenerationSettings
from nebras_bot.nlg import FALLBACK_REASON, GENERATED, MODEL_VERSION, GPT2NaturalLanguageGenerator

DOMAIN = Domain.from_yaml(
    """
version: "3.1"
intents: [track_order]
entities: [order_id]
slots:
  order_id:
    type: text
    mappings: [{type: from_entity, entity: order_id}]
responses:
  utter_plain: [{text: "Plain template."}]
  utter_opt_in:
    - text: "Order {order_id} is being prepared."
      buttons: [{title: "Cancel it", payload: "/cancel_order"}]
      metadata: {rephrase: true}
  utter_opt_out: [{text: "Legal notice, word for word.", metadata: {rephrase: false}}]
  utter_custom_only: [{custom: {map: "warehouse"}}]
  utter_empty: [{text: "", metadata: {rephrase: false}}]
  utter_generative: [{text: "Sorry, I can only help with orders."}]
"""
)
SLOTS = DOMAIN.slots


class RecordingDecoder:
    def __init__(self, text: str) -> None:
        self.text = text
        self.prompts: list[str] = []

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)

    def complete(self, prompt: str, max_new_tokens=None, time_limit=None, placeholder_ban=None) -> Completion:
        self.prompts.append(prompt)
        return Completion(self.text, self.text, 8, 40, 0.01, "marker")


@pytest.fixture(scope="module")
def loaded():
    return tiny_gpt2()


def make_nlg(loaded, reply: str = "Your order {order_id} is on its way.", **options) -> GPT2NaturalLanguageGenerator:
    generator = ResponseGenerator(loaded, GenerationSettings(torch_threads=1, timeout_s=10))
    generator.decoder = RecordingDecoder(reply)
    return GPT2NaturalLanguageGenerator(nlg_endpoint(**options), generator=generator)


def tracker() -> DialogueStateTracker:
    return DialogueStateTracker.from_events(
        "s",
        [ActionExecuted("action_listen"),
         UserUttered("where is order 48213", {"name": "track_order", "confidence": 0.9},
                     [{"entity": "order_id", "value": "48213"}]),
         SlotSet("order_id", "48213")],
        slots=SLOTS,
    )


async def generate(nlg, action: str, channel: str = "rest"):
    return await nlg.generate(action, tracker(), channel, domain_responses=DOMAIN.responses)


@pytest.mark.parametrize(
    "action, options, asked",
    [
        ("utter_plain", {}, False),
        ("utter_plain", {"rephrase_all": True}, True),
        ("utter_opt_in", {}, True),
        ("utter_opt_out", {"rephrase_all": True}, False),
        ("utter_custom_only", {"rephrase_all": True}, False),
        ("utter_generative", {}, True),
        ("utter_opt_in", {"channels": ["slack"]}, False),
        ("utter_opt_in", {"channels": ["rest"]}, True),
    ],
)
async def test_which_responses_the_model_writes(loaded, action, options, asked):
    nlg = make_nlg(loaded, **options)
    reply = await generate(nlg, action)
    assert bool(nlg.generator.decoder.prompts) is asked
    assert reply[GENERATED] is asked
    assert reply[MODEL_VERSION] == "gpt2-scratch:tiny"


async def test_rephrase_fills_placeholders_and_keeps_buttons(loaded):
    nlg = make_nlg(loaded)
    reply = await generate(nlg, "utter_opt_in")
    assert reply["text"] == "Your order 48213 is on its way."
    assert reply["buttons"] == [{"title": "Cancel it", "payload": "/cancel_order"}]
    (prompt,) = nlg.generator.decoder.prompts
    assert "template: Order 48213 is being prepared." in prompt  # rephrase: Rasa's rendered template


async def test_generate_mode_leaves_the_template_out_of_the_prompt(loaded):
    nlg = make_nlg(loaded, reply="I can help with orders, refunds and invoices.")
    reply = await generate(nlg, "utter_generative")
    assert reply["text"] == "I can help with orders, refunds and invoices."
    (prompt,) = nlg.generator.decoder.prompts
    assert prompt.startswith(SYSTEM) and "template:" not in prompt and "slots: order_id=48213" in prompt


async def test_mode_generate_for_every_response(loaded):
    nlg = make_nlg(loaded, mode="generate")
    await generate(nlg, "utter_opt_in")
    assert "template:" not in nlg.generator.decoder.prompts[0]


async def test_rejected_reply_keeps_the_template_and_says_why(loaded):
    nlg = make_nlg(loaded, reply="Your order 99999 is late.")
    reply = await generate(nlg, "utter_opt_in")
    assert reply["text"] == "Order 48213 is being prepared."
    assert reply[GENERATED] is False and reply[FALLBACK_REASON].startswith("unknown_")


async def test_never_empty_and_unknown_responses_follow_rasa(loaded):
    nlg = make_nlg(loaded)
    assert (await generate(nlg, "utter_empty"))["text"] == LAST_RESORT_TEXT
    assert await generate(nlg, "utter_does_not_exist") is None  # Rasa's own contract (it logs it)


async def test_a_crash_inside_the_generator_still_sends_the_template(loaded):
    nlg = make_nlg(loaded)

    async def broken(*args, **kwargs):
        raise RuntimeError("boom")

    nlg.generator.areply = broken
    reply = await generate(nlg, "utter_opt_in")
    assert reply["text"] == "Order 48213 is being prepared." and reply[FALLBACK_REASON] == "error: RuntimeError"


def test_options_come_from_the_endpoint_and_typos_are_errors(loaded):
    nlg = make_nlg(loaded, model="somewhere", history_turns=3, timeout=1.5, max_new_tokens=20,
                   generate_actions=["utter_x"], url=None)
    assert (nlg.settings.model, nlg.settings.max_history_turns, nlg.settings.timeout_s) == ("somewhere", 3, 1.5)
    assert nlg.settings.max_new_tokens == 20 and nlg.generate_actions == {"utter_x"}
    with pytest.raises(ValueError, match="unknown generation option 'max_tokens'"):
        make_nlg(loaded, max_tokens=5)
    with pytest.raises(ValueError, match="mode must be one of"):
        make_nlg(loaded, mode="poetry")
