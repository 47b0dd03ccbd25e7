"""The single-reply fast path: model conversion, int8 quantisation, prompt reuse, decoder choice."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from nebras_bot.generation.batching import GreedyEngine
from nebras_bot.generation.worker import BatchingWorker
from nebras_bot.generation.decoding import Decoder
from nebras_bot.generation.fastpath import (
    FastDecoder,
    TokenCache,
    build_decoder,
    conv1d_to_linear,
    prepare_model,
    quantize_int8,
)
from nebras_bot.generation.settings import GenerationSettings


def _logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=ids).logits


def test_conv1d_to_linear_keeps_the_function(tiny):
    from transformers.pytorch_utils import Conv1D

    model = copy.deepcopy(tiny.model)
    ids = torch.tensor([[10, 200, 3000, 42, 7]])
    before = _logits(model, ids)
    replaced = conv1d_to_linear(model)
    assert replaced == 4 * model.config.n_layer  # c_attn, c_proj, mlp.c_fc, mlp.c_proj per block
    assert not any(isinstance(m, Conv1D) for m in model.modules())
    assert torch.allclose(_logits(model, ids), before, atol=1e-5)


def test_int8_quantises_every_linear_layer_and_stays_close(tiny):
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    ids = torch.tensor([[10, 200, 3000, 42, 7, 99, 1234]])
    reference = _logits(tiny.model, ids)
    model = quantize_int8(copy.deepcopy(tiny.model))
    quantised = [m for m in model.modules() if isinstance(m, DynamicQuantizedLinear)]
    assert len(quantised) == 4 * model.config.n_layer + 1  # + the LM head
    assert not any(type(m) is nn.Linear for m in model.modules())
    got = _logits(model, ids)
    correlation = torch.corrcoef(torch.stack([got.flatten(), reference.flatten()]))[0, 1]
    assert correlation > 0.99
    assert not torch.equal(got, reference)  # really a different (quantised) computation


def test_prepare_model_rejects_unknown_precision(tiny):
    with pytest.raises(ValueError, match="fast_path"):
        prepare_model(tiny.model, "int4")


def test_bf16_model_decodes(tiny, settings, prompts):
    model = prepare_model(copy.deepcopy(tiny.model), "bf16")
    assert next(model.parameters()).dtype == torch.bfloat16
    completion = FastDecoder(GreedyEngine(model, tiny.tokenizer, settings)).complete(prompts[0], max_new_tokens=5)
    assert completion.new_tokens == 5


def test_token_cache_equals_whole_prompt_tokenisation(tiny, prompts):
    cache = TokenCache(tiny.tokenizer, checks=0)
    for prompt in prompts + [prompts[0] + "\n<|user|> thanks!\n<|agent|>", "one line", "a\nb\n"]:
        assert cache.encode(prompt) == tiny.tokenizer(prompt, add_special_tokens=False).input_ids
    assert cache.hits > 0  # repeated lines ("<|agent|>", "<|system|>", ...) were not tokenised again
    assert cache.enabled


def test_token_cache_turns_itself_off_when_lines_do_not_add_up(tiny):
    cache = TokenCache(tiny.tokenizer, checks=2)
    text = "two\n\n\nnew lines"  # BPE makes "\n\n" + "\n" of it; split by lines it is 3 x "\n"
    assert cache.encode(text) == tiny.tokenizer(text, add_special_tokens=False).input_ids
    assert not cache.enabled
    assert cache.encode(text) == tiny.tokenizer(text, add_special_tokens=False).input_ids


def test_token_cache_is_bounded(tiny):
    cache = TokenCache(tiny.tokenizer, size=3, checks=0)
    for index in range(10):
        cache.encode(f"line {index}")
    assert len(cache._lines) <= 3


def test_fast_decoder_with_prefix_reuse_equals_model_generate(tiny, settings, prompts):
    decoder = Decoder(tiny.model, tiny.tokenizer, settings)
    fast = FastDecoder(GreedyEngine(tiny.model, tiny.tokenizer, settings))
    sequence = [prompts[0], prompts[3], prompts[0], prompts[2], prompts[2]]
    for prompt in sequence:
        expected, got = decoder.complete(prompt), fast.complete(prompt)
        assert (got.raw, got.stopped_by, got.new_tokens) == (expected.raw, expected.stopped_by, expected.new_tokens)
    assert fast.reused_tokens > 0  # later prompts reused the KV of the shared beginning


def test_fast_decoder_time_limit_and_forced_length(tiny, settings, prompts):
    fast = FastDecoder(GreedyEngine(tiny.model, tiny.tokenizer, settings))
    assert fast.complete(prompts[1], time_limit=0.0).stopped_by == "time"
    forced = fast.complete(prompts[1], max_new_tokens=12, force_length=True)
    assert forced.new_tokens == 12 and forced.stopped_by == "length"
    assert fast.complete(prompts[1], max_new_tokens=4).new_tokens <= 4  # cache state after a time stop is fine


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, Decoder),
        ({"fast_path": "fp32"}, FastDecoder),
        ({"fast_path": "int8"}, FastDecoder),
        ({"batching": True}, BatchingWorker),
        ({"batching": True, "fast_path": "int8"}, BatchingWorker),
        ({"fast_path": "int8", "do_sample": True}, Decoder),  # only greedy has the fast path
        ({"batching": True, "num_beams": 2}, Decoder),
    ],
)
def test_build_decoder_follows_the_settings(tiny, options, expected):
    settings = GenerationSettings(**options)
    decoder = build_decoder(copy.deepcopy(tiny.model), tiny.tokenizer, settings)
    try:
        assert type(decoder) is expected
        assert decoder.count_tokens("<|user|> hi") == len(tiny.tokenizer("<|user|> hi").input_ids)
    finally:
        getattr(decoder, "close", lambda: None)()


@pytest.mark.parametrize(("native", "kernel", "expected"), [(True, True, "w8"), (True, False, "bf16"), (False, True, "fp32")])
def test_auto_fast_path_follows_the_hardware(tiny, monkeypatch, native, kernel, expected):
    import torch

    from nebras_bot.generation import fastpath
    from nebras_bot.generation.weightonly import Int8WeightLinear

    monkeypatch.setattr(fastpath, "cpu_bf16_supported", lambda: native)
    monkeypatch.setattr(fastpath, "int8_kernel_available", lambda: kernel)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert fastpath.resolve_fast_path("auto") == expected
    assert fastpath.resolve_fast_path("int8") == "int8"  # explicit choices are kept
    decoder = build_decoder(copy.deepcopy(tiny.model), tiny.tokenizer, GenerationSettings(fast_path="auto"))
    assert type(decoder) is FastDecoder
    model = decoder.engine.model
    assert next(model.parameters()).dtype == (torch.float32 if expected == "fp32" else torch.bfloat16)
    assert any(isinstance(m, Int8WeightLinear) for m in model.modules()) is (expected == "w8")


@pytest.mark.parametrize(("asked", "bf16", "expected"),
                         [("auto", True, "bf16"), ("auto", False, "fp32"), ("w8", True, "bf16"), ("w4", True, "bf16"),
                          ("int8", True, "bf16"), ("fp32", True, "fp32"), ("off", True, "off")])
def test_on_a_gpu_the_fast_path_is_bf16_and_cpu_kernels_are_not_used(monkeypatch, asked, bf16, expected):
    import torch

    from nebras_bot.generation import fastpath

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    monkeypatch.setattr(fastpath, "cpu_bf16_supported", lambda: True)  # the CPU's abilities do not count
    assert fastpath.resolve_fast_path(asked, torch.device("cuda")) == expected
    assert fastpath.resolve_fast_path("auto", torch.device("cpu")) in ("w8", "bf16")


def test_settings_reject_an_unknown_fast_path():
    with pytest.raises(ValueError, match="fast_path"):
        GenerationSettings(fast_path="turbo")
    assert GenerationSettings.from_options({"fast_path": "INT8"}).fast_path == "int8"


def test_response_generator_uses_the_batching_worker(tiny, prompts):
    from nebras_bot.generation.generator import ResponseGenerator
    from nebras_bot.generation.prompt import PromptContext, PromptTurn

    settings = GenerationSettings(batching=True, batch_max_size=4, max_new_tokens=8, timeout_s=30)
    loaded = copy.copy(tiny)
    loaded.model = copy.deepcopy(tiny.model)
    generator = ResponseGenerator(loaded, settings)
    try:
        assert isinstance(generator.decoder, BatchingWorker)
        result = generator.reply(PromptContext(history=[PromptTurn("user", "hi")]), template="Hello!")
        assert result.text  # generated or the templated fallback, never empty
        assert list(generator.decoder.batch_sizes) == [1]
    finally:
        generator.close()
    assert not generator.decoder._thread.is_alive()
