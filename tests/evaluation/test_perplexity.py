"""Perplexity / bits per byte against a hand computation (one forward pass per token) on a tiny GPT-2."""
from __future__ import annotations

import math

import pytest

from nebras_bot.evaluation import perplexity as pp

PAIRS = [
    ("<|system|>\nintent: track_order\n<|user|> where is my order?\n<|agent|>", " It is on its way.<|end|>"),
    ("<|system|>\n<|user|> hi\n<|agent|>", " Hello! How can I help you today?<|end|>"),
    ("<|user|> ok\n<|agent|>", " Great.<|end|>"),
]


def test_batched_scoring_equals_token_by_token_hand_computation(tiny_lm):
    model, tokenizer = tiny_lm
    result = pp.score(model, tokenizer, PAIRS, batch_size=2)  # batch of 2 + 1: padding must not leak
    by_hand = [pp.token_log_probs_by_hand(model, tokenizer, p, c) for p, c in PAIRS]
    nll = -sum(sum(v) for v in by_hand)
    tokens = sum(len(v) for v in by_hand)
    assert result.tokens == tokens == sum(len(tokenizer(c)["input_ids"]) for _, c in PAIRS)
    assert result.nll_sum == pytest.approx(nll, rel=1e-4)
    assert result.perplexity == pytest.approx(math.exp(nll / tokens), rel=1e-4)
    n_bytes = sum(len(c.encode("utf-8")) for _, c in PAIRS)
    assert result.bytes == n_bytes
    assert result.bits_per_byte == pytest.approx(nll / math.log(2) / n_bytes, rel=1e-4)


def test_untrained_model_is_near_uniform_and_prompt_matters_not_the_padding(tiny_lm):
    model, tokenizer = tiny_lm
    single = pp.score(model, tokenizer, PAIRS[:1], batch_size=1)
    batched = pp.score(model, tokenizer, PAIRS, batch_size=3)
    first_alone = pp.score(model, tokenizer, [PAIRS[0]], batch_size=8)
    assert single.nll_sum == pytest.approx(first_alone.nll_sum, rel=1e-5)
    # A random 2-layer model is close to uniform over the 50k vocabulary.
    assert 0.2 * len(tokenizer) < batched.perplexity < 5 * len(tokenizer)


def test_long_prompt_is_cut_from_the_left_and_completion_kept(tiny_lm):
    _, tokenizer = tiny_lm
    prompt = "word " * 400
    ids, start = pp.encode_pair(tokenizer, prompt, " the reply<|end|>", max_tokens=64)
    assert len(ids) == 64
    assert tokenizer.decode(ids[start:]) == " the reply<|end|>"


def test_empty_input_gives_no_perplexity(tiny_lm):
    model, tokenizer = tiny_lm
    result = pp.score(model, tokenizer, [])
    assert result.tokens == 0 and result.perplexity is None and result.bits_per_byte is None
