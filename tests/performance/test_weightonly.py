"""Weight-only quantisation (``fast_path: w8`` / ``w4``): int8/int4 weights, bf16 arithmetic."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from nebras_bot.generation import weightonly
from nebras_bot.generation.weightonly import Int4WeightLinear, Int8WeightLinear, fuse_rows, quantize_weights

from .test_llama_exactness import llama  # noqa: F401 (fixture)

LAYERS = {8: Int8WeightLinear, 4: Int4WeightLinear}


def _linear(inputs: int, outputs: int, seed: int = 0, bias: bool = False) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(inputs, outputs, bias=bias)


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("rows", [1, 3, 12])
def test_layer_computes_with_its_rounded_weight(bits, rows):
    """The kernel path (few rows) and the de-quantised path (many rows) use the same weight, and
    that weight is the original one rounded to ``bits`` bits."""
    linear = _linear(128, 96)
    layer = LAYERS[bits](linear)
    x = torch.randn(rows, 128)
    with torch.inference_mode():
        got = layer(x).float()
        reference = x.bfloat16().float() @ layer.dequantized().float().t()
    assert got.dtype == torch.float32 and got.shape == (rows, 96)
    assert torch.allclose(got, reference, atol=0.05, rtol=0.02)
    levels = 255 if bits == 8 else 15
    span = linear.weight.abs().amax() * 2
    bf16_rounding = linear.weight.abs().amax() / 128
    assert (layer.dequantized().float() - linear.weight).abs().max() <= span / levels + bf16_rounding  # one step


def test_int8_bias_and_batch_shape_are_kept():
    linear = _linear(64, 32, bias=True)
    layer = Int8WeightLinear(linear)
    x = torch.randn(2, 5, 64)
    with torch.inference_mode():
        got = layer(x)
    assert got.shape == (2, 5, 32)
    assert torch.allclose(got.float(), linear(x), atol=0.05)


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("sizes", [(64, 32, 32), (576, 192, 192)])
def test_fused_rows_compute_the_layers_side_by_side(bits, sizes):
    """A fused layer equals its parts (for int4 also when a part is not a multiple of the kernel's
    64-row packing block), and the parts still compute what they did."""
    layers = [LAYERS[bits](_linear(128, size, seed=i)) for i, size in enumerate(sizes)]
    x = torch.randn(1, 128)
    with torch.inference_mode():
        before = [layer(x) for layer in layers]
        fused = fuse_rows(layers)
        assert torch.equal(fused(x), torch.cat(before, dim=-1))
        assert all(torch.equal(layer(x), old) for layer, old in zip(layers, before))
        many = x.repeat(6, 1)  # the de-quantised path
        assert torch.equal(fused(many), torch.cat([layer(many) for layer in layers], dim=-1))


def test_fuse_rows_refuses_mixed_layers():
    with pytest.raises(ValueError, match="cannot fuse"):
        fuse_rows([Int8WeightLinear(_linear(64, 32)), Int4WeightLinear(_linear(64, 32))])


@pytest.mark.parametrize("bits", [8, 4])
def test_quantize_weights_converts_every_linear_layer(llama, bits):
    model, _tokenizer = llama
    quantised = quantize_weights(copy.deepcopy(model), bits=bits)
    kinds = {type(m) for m in quantised.modules() if isinstance(m, (nn.Linear, Int8WeightLinear, Int4WeightLinear))}
    assert nn.Linear not in kinds
    head = quantised.lm_head  # 50k+ GPT-2 vocabulary rows: not a multiple of 16, so int8 even for w4
    assert isinstance(head, Int8WeightLinear if len(_tokenizer) % 16 else LAYERS[bits])
    assert quantised.config.tie_word_embeddings is False
    ids = torch.randint(0, 2000, (1, 12))
    with torch.inference_mode():
        reference, got = model(ids).logits, quantised(ids).logits.float()
    assert torch.argmax(got[0, -1]) == torch.argmax(reference[0, -1]) or bits == 4
    assert (got - reference).abs().max() < (0.2 if bits == 8 else 1.5)


def test_without_the_kernel_w8_says_so(monkeypatch):
    monkeypatch.setattr(weightonly, "int8_kernel_available", lambda: False)
    with pytest.raises(RuntimeError, match="_weight_int8pack_mm"):
        quantize_weights(nn.Sequential(nn.Linear(8, 8)))


@pytest.mark.parametrize("bits", [8, 4])
def test_held_weights_give_the_same_prompt_pass_and_are_dropped_when_fused(bits):
    torch.manual_seed(4)
    kind = Int8WeightLinear if bits == 8 else Int4WeightLinear
    layer = kind(nn.Linear(64, 32, bias=False))
    many = torch.randn(9, 64, dtype=torch.bfloat16)  # more rows than the kernel takes: de-quantised
    expected = layer(many)
    assert layer.hold_dequantized() == 32 * 64 * 2  # bytes of the bf16 copy
    assert torch.equal(layer(many), expected)
    layer.held.zero_()  # the held copy is what a many-row pass uses ...
    assert not layer(many).any()
    assert torch.equal(layer(many[:2]), layer._kernel(many[:2]))  # ... and a few rows never use it
    other = kind(nn.Linear(64, 16, bias=False))
    fused = fuse_rows([layer, other])
    assert layer.held is None and fused.held is None  # rebound rows: a held copy would be stale
    assert torch.allclose(fused(many)[:, :32].float(), expected.float(), atol=0.05)


def test_lean_llama_holds_the_body_weights_for_prompt_passes(llama):
    from nebras_bot.generation.fastpath import fast_decoder, prepare_model
    from nebras_bot.generation.lean import LeanLlama
    from nebras_bot.generation.settings import GenerationSettings

    model, tokenizer = llama
    ids = torch.randint(0, 2000, (1, 30))
    quantised = prepare_model(copy.deepcopy(model), "w8")
    with torch.inference_mode():
        expected = LeanLlama(copy.deepcopy(quantised))(ids).logits
        lean = LeanLlama(quantised)
        body = sum(layer.weight_int8.numel() for block in lean.blocks for layer in block[1:] if hasattr(layer, "weight_int8"))
        assert lean.hold_dequantized() == 2 * body
        assert torch.equal(lean(ids).logits, expected)
    assert lean.head.held is None  # prompt passes keep one position's logits: the head stays int8 only
    held = fast_decoder(prepare_model(copy.deepcopy(model), "w8"), tokenizer, GenerationSettings(), "w8")
    kept = fast_decoder(prepare_model(copy.deepcopy(model), "w8"), tokenizer, GenerationSettings(hold_bf16_weights=False), "w8")
    assert held.engine.model.blocks[0][1].held is not None and kept.engine.model.blocks[0][1].held is None
