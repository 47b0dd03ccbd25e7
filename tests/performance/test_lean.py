"""``LeanLlama``: the lean single-row forward computes what transformers' Llama computes, and the
single-reply decoder on it writes ``model.generate``'s replies (fp32, tiny random Llama)."""
from __future__ import annotations

import copy

import pytest
import torch

from nebras_bot.generation.batching import GreedyEngine
from nebras_bot.generation.fastpath import FastDecoder, build_decoder, fast_decoder, prepare_model
from nebras_bot.generation.lean import LeanCache, LeanLlama, lean_supported
from nebras_bot.generation.settings import GenerationSettings

from .test_llama_exactness import NEW_TOKENS, RULES, _generate, _settings, echo_prompts, llama  # noqa: F401 (fixtures)

FP32_TOLERANCE = 1e-4


@pytest.fixture
def ids():
    torch.manual_seed(5)
    return torch.randint(0, 2000, (1, 40))


def test_prompt_pass_equals_transformers(llama, ids):
    model, _ = llama
    with torch.inference_mode():
        expected = model(ids).logits
        got = LeanLlama(copy.deepcopy(model))(ids)
    assert got.logits.shape == expected.shape
    assert torch.allclose(got.logits, expected, atol=FP32_TOLERANCE)
    assert got.past_key_values.get_seq_length() == ids.shape[1]


def test_steps_drafts_and_crops_equal_transformers(llama, ids):
    """Prefill 20 tokens, verify a 5-token draft, drop 3 of it, then go on one token at a time."""
    model, _ = llama
    lean = LeanLlama(copy.deepcopy(model))
    with torch.inference_mode():
        expected = model(ids).logits[0]
        cache = lean(ids[:, :20], logits_to_keep=1).past_key_values
        draft = lean(ids[:, 20:25], past_key_values=cache, position_ids=torch.arange(20, 25).unsqueeze(0))
        assert torch.allclose(draft.logits[0], expected[20:25], atol=FP32_TOLERANCE)
        cache.crop(22)
        for position in range(22, 30):
            step = lean(ids[:, position : position + 1], past_key_values=cache)
            assert torch.allclose(step.logits[0, -1], expected[position], atol=FP32_TOLERANCE)
    assert cache.get_seq_length() == 30


def test_cache_grows_past_its_first_capacity(llama, ids, monkeypatch):
    from nebras_bot.generation import lean as lean_module

    model, _ = llama
    monkeypatch.setattr(lean_module, "INITIAL_CAPACITY", 8)
    lean = LeanLlama(copy.deepcopy(model))
    with torch.inference_mode():
        expected = model(ids).logits[0]
        cache = lean(ids[:, :6]).past_key_values
        assert cache.keys.shape[3] == 8
        for position in range(6, 40):
            logits = lean(ids[:, position : position + 1], past_key_values=cache).logits[0, -1]
        assert torch.allclose(logits, expected[39], atol=FP32_TOLERANCE)
    assert cache.keys.shape[3] >= 40


def test_rejects_what_it_cannot_compute(llama, ids, tiny):
    model, _ = llama
    lean = LeanLlama(copy.deepcopy(model))
    with torch.inference_mode():
        with pytest.raises(ValueError, match="one unpadded row"):
            lean(ids.repeat(2, 1))
        with pytest.raises(ValueError, match="one unpadded row"):
            lean(ids, attention_mask=torch.cat([torch.zeros(1, 1), torch.ones(1, 39)], dim=1))
        cache = lean(ids[:, :10]).past_key_values
        with pytest.raises(ValueError, match="does not follow"):
            lean(ids[:, 12:13], past_key_values=cache, position_ids=torch.tensor([[12]]))
    assert lean_supported(model) and not lean_supported(tiny.model)  # GPT-2 keeps the transformers forward
    with pytest.raises(ValueError, match="Llama-style"):
        LeanLlama(tiny.model)


def test_the_wrapped_model_keeps_its_function_and_shares_the_fused_weights(llama, ids):
    model, _ = llama
    wrapped = copy.deepcopy(model)
    lean = LeanLlama(wrapped)
    with torch.inference_mode():
        assert torch.equal(wrapped(ids).logits, model(ids).logits)
    q_proj = wrapped.model.layers[0].self_attn.q_proj
    fused = lean.blocks[0][1]
    assert q_proj.weight.data_ptr() == fused.weight.data_ptr()  # a view, not a copy


@pytest.mark.parametrize("rules", sorted(RULES))
@pytest.mark.parametrize("lookup", [False, True])
def test_single_replies_equal_model_generate(llama, echo_prompts, rules, lookup):
    model, tokenizer = llama
    settings = _settings(rules)
    fast = fast_decoder(copy.deepcopy(model), tokenizer, settings, "fp32", lookup=lookup)
    assert isinstance(fast.engine.model, LeanLlama)
    conversation = [echo_prompts[0], echo_prompts[0] + " Sure.<|end|>\n<|user|> and when?\n<|agent|>", *echo_prompts[1:]]
    assert [fast.complete(p).raw for p in conversation] == _generate(model, tokenizer, settings, conversation)
    assert fast.reused_tokens > 0  # the second prompt continued the first one's cache


@pytest.mark.parametrize(
    ("fast_path", "lean"),
    [("fp32", True), ("bf16", True), ("w8", True), ("w4", True), ("int8", False)],
)
def test_build_decoder_runs_single_replies_through_lean_llama(llama, fast_path, lean):
    model, tokenizer = llama
    decoder = build_decoder(copy.deepcopy(model), tokenizer, GenerationSettings(fast_path=fast_path, max_new_tokens=6))
    assert isinstance(decoder, FastDecoder)
    assert isinstance(decoder.engine.model, LeanLlama) is lean
    assert decoder.complete("<|user|> hi\n<|agent|>").new_tokens >= 1


def test_quantised_lean_equals_the_quantised_transformers_model(llama, ids):
    """w8/w4: the lean forward and transformers' forward use the same int8/int4 layers."""
    model, _ = llama
    for fast_path in ("w8", "w4"):
        quantised = prepare_model(copy.deepcopy(model), fast_path)
        with torch.inference_mode():
            expected = quantised(ids).logits.float()[0]
            lean = LeanLlama(quantised)
            cache = lean(ids[:, :30]).past_key_values
            steps = [lean(ids[:, p : p + 1], past_key_values=cache).logits.float()[0, -1] for p in range(30, 34)]
        # one-row passes use the int8/int4 kernels, 30-row passes the de-quantised weights: bf16 rounding apart
        assert torch.allclose(torch.stack(steps), expected[30:34], atol=0.1), fast_path
        assert isinstance(cache, LeanCache)


def test_batching_with_weight_only_paths_decodes_batches_in_bf16(llama):
    from nebras_bot.generation.worker import BatchingWorker

    model, tokenizer = llama
    worker = build_decoder(copy.deepcopy(model), tokenizer, GenerationSettings(fast_path="w4", batching=True))
    try:
        assert isinstance(worker, BatchingWorker)
        layer = worker.engine.model.model.layers[0].self_attn.q_proj
        assert type(layer) is torch.nn.Linear and layer.weight.dtype == torch.bfloat16
    finally:
        worker.close()
