"""Nebras's greedy loop gives ``model.generate``'s tokens on a Llama-style (RoPE, grouped-query
attention, SwiGLU) model too: alone, in a left-padded batch of prompts of different lengths, and
with the previous prompt's KV cache reused.

The shipped model is SmolLM2 (a Llama architecture); these tests use a tiny random Llama with the
real GPT-2 tokenizer, built here. Its logits are spread enough (``initializer_range=0.1``) that a
greedy choice does not hinge on a last-bit rounding difference, so the tests check the decoding
logic (repetition penalty and no-repeat n-grams over the generated tokens only, positions, masks,
cache). Each prompt ends with the model's own unpenalised continuation, so the model keeps wanting
prompt tokens, as a real LM copying from its prompt does: penalising the prompt (the bug that made
the loop diverge from ``generate`` on SmolLM2) then changes the replies, and these tests catch it.
"""
from __future__ import annotations

import pytest
import torch

from nebras_bot.generation.batching import DecodeRequest, GreedyEngine
from nebras_bot.generation.decoding import Decoder
from nebras_bot.generation.fastpath import FastDecoder
from nebras_bot.generation.settings import GenerationSettings

from .conftest import PROMPTS

NEW_TOKENS = 24
# The shipped decoding rules, and a stronger version of them.
RULES = {
    "shipped": dict(repetition_penalty=1.15, no_repeat_ngram_size=4),
    "strong": dict(repetition_penalty=1.8, no_repeat_ngram_size=2),
}


def _settings(rules: str) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=NEW_TOKENS, timeout_s=60, **RULES[rules])


def _generate(model, tokenizer, settings, prompts):
    """What ``model.generate`` writes (through ``Decoder``, Nebras's reference decoder)."""
    decoder = Decoder(model, tokenizer, settings)
    return [decoder.complete(p).raw for p in prompts]


@pytest.fixture(scope="module")
def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    from nebras_bot.generation.loader import gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    eos = tokenizer.eos_token_id
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, rope_theta=10000.0,
        initializer_range=0.1, tie_word_embeddings=True, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
    )
    torch.manual_seed(3)
    torch.set_num_threads(1)
    return LlamaForCausalLM(config).eval(), tokenizer


@pytest.fixture(scope="module")
def echo_prompts(llama):
    model, tokenizer = llama
    free = GenerationSettings(max_new_tokens=NEW_TOKENS, repetition_penalty=1.0, no_repeat_ngram_size=0)
    return [p + reply for p, reply in zip(PROMPTS, _generate(model, tokenizer, free, PROMPTS))]


@pytest.mark.parametrize("rules", sorted(RULES))
def test_single_prompts_equal_model_generate(llama, echo_prompts, rules):
    model, tokenizer = llama
    settings = _settings(rules)
    engine = GreedyEngine(model, tokenizer, settings)
    got = [engine.decode([DecodeRequest(engine.encode(p), NEW_TOKENS)])[0].raw for p in echo_prompts]
    assert got == _generate(model, tokenizer, settings, echo_prompts)


@pytest.mark.parametrize("rules", sorted(RULES))
def test_left_padded_batch_equals_model_generate(llama, echo_prompts, rules):
    model, tokenizer = llama
    settings = _settings(rules)
    engine = GreedyEngine(model, tokenizer, settings)
    assert len({len(engine.encode(p)) for p in echo_prompts}) == len(echo_prompts)  # all padded differently
    together = engine.decode([DecodeRequest(engine.encode(p), NEW_TOKENS) for p in echo_prompts])
    assert [c.raw for c in together] == _generate(model, tokenizer, settings, echo_prompts)


@pytest.mark.parametrize("rules", sorted(RULES))
def test_rows_joining_a_running_batch_equal_model_generate(llama, echo_prompts, rules):
    """Continuous batching: prompts prefilled later join a batch mid-decoding (RoPE with padding)."""
    model, tokenizer = llama
    settings = _settings(rules)
    engine = GreedyEngine(model, tokenizer, settings)
    batch = engine.open([DecodeRequest(engine.encode(p), NEW_TOKENS) for p in echo_prompts[:2]], tags=[0, 1])
    done = {}
    for later in (2, 3, 4):
        for _ in range(3):
            done.update(dict(engine.step(batch)))
        engine.join(batch, engine.open([DecodeRequest(engine.encode(echo_prompts[later]), NEW_TOKENS)], tags=[later]))
    while len(batch):
        done.update(dict(engine.step(batch)))
    assert [done[i].raw for i in range(len(echo_prompts))] == _generate(model, tokenizer, settings, echo_prompts)


def test_prefix_reuse_equals_model_generate(llama, echo_prompts):
    """Consecutive prompts of one conversation: the second reuses the first's KV cache."""
    model, tokenizer = llama
    settings = _settings("shipped")
    first = echo_prompts[0]
    conversation = [first, first + " Sure.<|end|>\n<|user|> and when will it arrive?\n<|agent|>", echo_prompts[2]]
    fast = FastDecoder(GreedyEngine(model, tokenizer, settings))
    got = [fast.complete(p).raw for p in conversation]
    assert fast.reused_tokens > len(fast.tokens.encode(first)) // 2
    assert got == _generate(model, tokenizer, settings, conversation)


def test_penalising_the_prompt_would_change_the_replies(llama, echo_prompts):
    """Sensitivity: ``generate``'s own repetition penalty (prompt included) gives other replies here,
    so the equalities above fail for a loop that penalises prompt tokens."""
    model, tokenizer = llama
    settings = _settings("shipped")
    decoder = Decoder(model, tokenizer, settings)
    changed = 0
    for prompt, expected in zip(echo_prompts, _generate(model, tokenizer, settings, echo_prompts)):
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
        kwargs = decoder._generate_kwargs(ids.shape[1], NEW_TOKENS, None)
        kwargs.update(repetition_penalty=settings.repetition_penalty, stopping_criteria=None,
                      logits_processor=kwargs["logits_processor"][:1])  # keep the n-gram rule only
        with torch.inference_mode():
            output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
        changed += tokenizer.decode(output[0, ids.shape[1]:]) != expected
    assert changed >= 2


@pytest.mark.parametrize("rules", sorted(RULES))
def test_prompt_lookup_equals_model_generate(llama, echo_prompts, rules):
    model, tokenizer = llama
    settings = _settings(rules)
    fast = FastDecoder(GreedyEngine(model, tokenizer, settings), reuse_prefix=False, lookup_tokens=8)
    assert [fast.complete(p).raw for p in echo_prompts] == _generate(model, tokenizer, settings, echo_prompts)
    if rules == "shipped":  # (under a no-repeat 2-gram rule no draft can ever be accepted)
        assert fast.decoding_passes < fast.generated_tokens - len(echo_prompts)  # drafts were accepted
