"""``nebras_sdpa``: grouped-query decoding steps without expanding the KV cache give the same replies."""
from __future__ import annotations

import copy

import pytest
import torch

from nebras_bot.generation import attention
from nebras_bot.generation.batching import DecodeRequest, GreedyEngine
from nebras_bot.generation.fastpath import prepare_model

from .test_llama_exactness import NEW_TOKENS, _generate, _settings, echo_prompts, llama  # noqa: F401 (fixtures)


def test_prepare_model_switches_grouped_query_models_only(llama, tiny):
    model, _ = llama
    switched = prepare_model(copy.deepcopy(model), "fp32")
    assert switched.config._attn_implementation == attention.ATTENTION_NAME
    assert model.config._attn_implementation == attention.BASE_ATTENTION  # the original is untouched
    gpt2 = prepare_model(copy.deepcopy(tiny.model), "fp32")  # one key/value head per query head
    assert gpt2.config._attn_implementation != attention.ATTENTION_NAME


def test_one_token_query_attention_equals_expanded_sdpa(llama):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    model, _ = llama
    module = model.model.layers[0].self_attn
    torch.manual_seed(0)
    query, key, value = torch.randn(3, 4, 1, 16), torch.randn(3, 2, 9, 16), torch.randn(3, 2, 9, 16)
    mask = torch.ones(3, 1, 1, 9, dtype=torch.bool)
    mask[0, ..., :4] = False  # left padding of row 0
    expected, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.25)
    got, _ = attention.grouped_decode_attention(module, query, key, value, mask, scaling=0.25)
    assert got.shape == expected.shape == (3, 1, 4, 16)
    assert torch.allclose(got, expected, atol=1e-6)
    swapped = attention.grouped_decode_attention(module, query, key.flip(1), value.flip(1), mask, scaling=0.25)[0]
    assert not torch.allclose(swapped, expected, atol=1e-3)  # the head-to-group order matters


@pytest.mark.parametrize("rules", ["shipped", "strong"])
def test_batched_and_joined_rows_equal_model_generate_with_grouped_attention(llama, echo_prompts, rules):  # noqa: F811
    model, tokenizer = llama
    settings = _settings(rules)
    expected = _generate(model, tokenizer, settings, echo_prompts)  # transformers' own sdpa
    engine = GreedyEngine(prepare_model(copy.deepcopy(model), "fp32"), tokenizer, settings)
    together = engine.decode([DecodeRequest(engine.encode(p), NEW_TOKENS) for p in echo_prompts])
    assert [c.raw for c in together] == expected
    batch = engine.open([DecodeRequest(engine.encode(p), NEW_TOKENS) for p in echo_prompts[:3]], tags=[0, 1, 2])
    done = {}
    for later in (3, 4):
        for _ in range(4):
            done.update(dict(engine.step(batch)))
        engine.join(batch, engine.open([DecodeRequest(engine.encode(echo_prompts[later]), NEW_TOKENS)], tags=[later]))
    while len(batch):
        done.update(dict(engine.step(batch)))
    assert [done[i].raw for i in range(len(echo_prompts))] == expected
