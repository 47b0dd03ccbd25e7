"""Placeholder steering: no token opens a ``{placeholder}`` that cannot be filled, and a reply with one
is continued from before it instead of being thrown away (``nebras_bot.generation.constraints``)."""
from __future__ import annotations

import time

import pytest
import torch

from transformers import LogitsProcessor

from nebras_bot.generation import constraints, decoding
from nebras_bot.generation.batching import DecodeRequest, GreedyEngine, Row
from nebras_bot.generation.constraints import BAN_ALL, BAN_FIRST, PlaceholderBan
from nebras_bot.generation.decoding import BanPlaceholderOpenings, Completion, Decoder
from nebras_bot.generation.fastpath import FastDecoder
from nebras_bot.generation.generator import ResponseGenerator
from nebras_bot.generation.loader import gpt2_tokenizer, tiny_gpt2
from nebras_bot.generation.prompt import PromptContext, PromptTurn
from nebras_bot.generation.settings import GenerationSettings

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tokenizer():
    return gpt2_tokenizer()


@pytest.fixture(scope="module")
def loaded():
    return tiny_gpt2()


def token_id(tokenizer, text: str) -> int:
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert len(ids) == 1, (text, ids)
    return ids[0]


# --------------------------------------------------------------------------- the rules


def test_brace_tokens_are_the_tokens_with_a_brace(tokenizer):
    braces = set(constraints.brace_tokens(tokenizer))
    for text in ("{", " {", "({", "}", "})"):
        assert token_id(tokenizer, text) in braces
    for text in (" order", "_", " id", "."):
        assert token_id(tokenizer, text) not in braces
    assert all(set("{}") & set(tokenizer.decode([i])) for i in braces)


def test_ban_all_bans_every_step_ban_first_only_the_first(tokenizer):
    opening = constraints.brace_tokens(tokenizer)
    everywhere, first = PlaceholderBan(tokenizer, BAN_ALL), PlaceholderBan(tokenizer, BAN_FIRST)
    assert everywhere.banned([]) == opening and everywhere.banned([1, 2, 3]) == opening
    assert first.banned([]) == opening and first.banned([1]) == []
    with pytest.raises(ValueError, match="unknown placeholder ban"):
        PlaceholderBan(tokenizer, "sometimes")


@pytest.mark.parametrize(
    "values, ban",
    [
        ({}, BAN_ALL),
        ({"order_id": None, "person_name": "", "flag": True}, BAN_ALL),  # no usable value
        ({"order_id": "48213"}, None),
        ({"account_type": ["premium"]}, None),
    ],
)
def test_everything_is_banned_only_when_nothing_could_be_filled(values, ban):
    assert constraints.ban_for(values) == ban


@pytest.mark.parametrize(
    "text, values, hole",
    [
        ("Your order {order_id} ships today.", {"order_id": "1"}, None),
        ("Invoice {invoice_id} for order {order_id}.", {"order_id": "1"}, "{invoice_id}"),
        ("Order {order_number} is late.", {"order_id": "1"}, None),  # another name of the slot
        ("Hi {person_name}, invoice { invoice_id }.", {"person_name": "Jo"}, "{ invoice_id }"),
        ("No placeholder here.", {}, None),
        ("Your {account\\_type} plan, order {order\\_id}.", {"account_type": "Pro"}, "{order\\_id}"),
    ],
)
def test_first_unfillable_placeholder(text, values, hole):
    assert constraints.first_unfillable(text, values) == hole


# --------------------------------------------------------------------------- in the decoders


def test_engine_applies_a_rows_ban_and_leaves_other_rows_alone(loaded):
    engine = GreedyEngine(loaded.model, loaded.tokenizer, GenerationSettings(torch_threads=1, no_repeat_ngram_size=0))
    vocab = loaded.model.config.vocab_size
    banned_row = Row(DecodeRequest([1, 2], 5, ban=engine.placeholder_ban(BAN_ALL)))
    free_row = Row(DecodeRequest([1, 2], 5))
    scores = engine.process(torch.zeros(2, vocab), None, [banned_row, free_row])
    opening = constraints.brace_tokens(loaded.tokenizer)
    assert (scores[0, opening] == -float("inf")).all() and (scores[1] == 0).all()
    assert int((scores[0] == -float("inf")).sum()) == len(opening)


def test_generate_processor_bans_openings_after_the_prompt_only(tokenizer):
    ban = BanPlaceholderOpenings(PlaceholderBan(tokenizer, BAN_FIRST), prompt_length=3)
    opening = constraints.brace_tokens(tokenizer)
    at_first = ban(torch.tensor([[5, 6, 7]]), torch.zeros(1, len(tokenizer)))
    assert (at_first[0, opening] == -float("inf")).all()
    later = ban(torch.tensor([[5, 6, 7, 8]]), torch.zeros(1, len(tokenizer)))
    assert (later == 0).all()


class FavouringBrace(torch.nn.Module):
    """Wraps a model so that the token ``favoured`` always wins unless banned (a model that loves ``{``)."""

    def __init__(self, model, favoured: int) -> None:
        super().__init__()
        self.inner, self.favoured, self.config = model, favoured, model.config

    def forward(self, *args, **kwargs):
        output = self.inner(*args, **kwargs)
        output.logits[..., self.favoured] += 1e4
        return output


class Favour(LogitsProcessor):
    """A processor that makes token ``favoured`` win (runs before the ban, like the model's own wish)."""

    def __init__(self, favoured: int) -> None:
        self.favoured = favoured

    def __call__(self, input_ids, scores):
        scores[:, self.favoured] += 1e4
        return scores


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "generate"])
def test_decoders_never_write_a_banned_opening(loaded, fast, monkeypatch):
    settings = GenerationSettings(torch_threads=1, no_repeat_ngram_size=0, repetition_penalty=1.0)
    favoured = token_id(loaded.tokenizer, " {")
    prompt = "<|user|> where is my order?\n<|agent|>"
    if fast:
        decoder = FastDecoder(GreedyEngine(FavouringBrace(loaded.model, favoured), loaded.tokenizer, settings),
                              lookup_tokens=0)
    else:
        plain = decoding.generated_only_processors
        monkeypatch.setattr(decoding, "generated_only_processors", lambda *a: [Favour(favoured)] + plain(*a))
        decoder = Decoder(loaded.model, loaded.tokenizer, settings)
    unsteered = decoder.complete(prompt, max_new_tokens=4)
    assert "{" in unsteered.raw  # the brace wins without a ban
    assert "{" not in decoder.complete(prompt, max_new_tokens=4, placeholder_ban=BAN_ALL).raw
    first = decoder.complete(prompt, max_new_tokens=4, placeholder_ban=BAN_FIRST).raw
    assert not first.startswith(" {") and "{" in first


# --------------------------------------------------------------------------- continuing a reply


class ScriptedDecoder:
    """Returns the next scripted raw completion and records each call."""

    def __init__(self, *raws: str) -> None:
        self.raws, self.calls = list(raws), []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def complete(self, prompt, max_new_tokens=None, time_limit=None, placeholder_ban=None) -> Completion:
        self.calls.append(dict(prompt=prompt, max_new_tokens=max_new_tokens, ban=placeholder_ban))
        raw = self.raws.pop(0) if len(self.raws) > 1 else self.raws[0]
        return Completion(raw.split("<|end|>")[0].strip(), raw, len(raw.split()), 50, 0.01, "marker")


def first_completion(raw: str) -> Completion:
    return Completion(raw.split("<|end|>")[0].strip(), raw, len(raw.split()), 50, 0.01, "marker")


def test_reply_is_continued_from_before_the_unfillable_placeholder():
    decoder = ScriptedDecoder(" is ready to download.<|end|>")
    first = first_completion(" Invoice for order {order_id}: {invoice_id} is ready.<|end|>")
    done = constraints.continue_without(decoder, "PROMPT", first, {"order_id": "1"}, retries=2, max_new_tokens=50)
    assert done.text == "Invoice for order {order_id}: is ready to download."
    assert decoder.calls == [dict(prompt="PROMPT Invoice for order {order_id}:", max_new_tokens=46, ban=BAN_FIRST)]


def test_a_doubled_brace_is_cut_whole():
    decoder = ScriptedDecoder(" I understand you want to cancel order {order_id}.<|end|>")
    first = first_completion(" {{Salutation}} I understand.<|end|>")
    done = constraints.continue_without(decoder, "P", first, {"order_id": "1"}, retries=2, max_new_tokens=50)
    assert done.text == "I understand you want to cancel order {order_id}."
    assert decoder.calls[0]["prompt"] == "P"


def test_continuing_stops_after_the_retries_and_when_no_room_or_time_is_left():
    values = {"order_id": "1"}
    stubborn = ScriptedDecoder(" {invoice_id} again.<|end|>")
    first = first_completion(" Your invoice {invoice_id} is ready.<|end|>")
    done = constraints.continue_without(stubborn, "P", first, values, retries=2, max_new_tokens=50)
    assert len(stubborn.calls) == 2 and constraints.first_unfillable(done.text, values) == "{invoice_id}"
    for kwargs in (dict(max_new_tokens=5), dict(max_new_tokens=50, deadline=time.perf_counter() - 1)):
        idle = ScriptedDecoder(" fine.<|end|>")
        assert constraints.continue_without(idle, "P", first, values, retries=2, **kwargs) is first
        assert idle.calls == []


def test_generator_bans_openings_without_values_and_continues_with_values(loaded):
    context = PromptContext(history=[PromptTurn("user", "where is my invoice?")], intent="check_invoice",
                            template="Your invoices are under Billing.")
    generator = ResponseGenerator(loaded, GenerationSettings(torch_threads=1, timeout_s=5))
    generator.decoder = ScriptedDecoder(" Your invoice is under Billing, in your account.<|end|>")
    result = generator.reply(context, context.template)
    assert result.generated and generator.decoder.calls[0]["ban"] == BAN_ALL

    generator.decoder = ScriptedDecoder(
        " Hello {person_name}, invoice {invoice_id} is under Billing.<|end|>", " is under Billing, Jo.<|end|>"
    )
    result = generator.reply(context, context.template, values={"person_name": "Jo"})
    assert result.generated and result.text == "Hello Jo, invoice is under Billing, Jo."
    assert [call["ban"] for call in generator.decoder.calls] == [None, BAN_FIRST]

    generator.settings.steer_placeholders = False  # the old behaviour: the template
    generator.decoder = ScriptedDecoder(" Hello {person_name}, invoice {invoice_id} is ready.<|end|>")
    result = generator.reply(context, context.template, values={"person_name": "Jo"})
    assert not result.generated and result.reason.startswith("missing_placeholder")
    assert [call["ban"] for call in generator.decoder.calls] == [None]
