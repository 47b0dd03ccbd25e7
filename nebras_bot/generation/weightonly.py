"""int8 weights with bf16 arithmetic (``fast_path: w8``) for CPUs with native bf16.

Decoding one token multiplies a single row of activations by every weight matrix, so its speed is
how fast the weights can be read and turned into products. On a Sapphire Rapids CPU (AMX-BF16)
one 576 x 1536 SmolLM2 projection for one token takes (1 thread, docs/performance.md):
fp32 ~205 us, bf16 ~190 us (oneDNN's AMX kernel gains nothing on a single row), **int8 weights
with bf16 activations ~69 us** (``torch.ops.aten._weight_int8pack_mm``), and the 576 x 49152 LM
head 7.9 ms / 5.6 ms / **2.0 ms**.

Unlike ``int8`` (dynamic quantisation, which also rounds the *activations* to int8 and was not
quality-safe for SmolLM2), only the weights are rounded here: symmetric int8 per output channel,
with a bf16 scale per channel. Activations stay bf16, as on the ``bf16`` path.

The int8 kernel is a matrix-vector product: its cost grows with the number of rows. A pass over
more than :data:`INT8_KERNEL_MAX_ROWS` rows (the prompt, a long draft) uses the same int8 weights
de-quantised to bf16 for that pass, on the AMX matrix kernel, so both kinds of pass see the same
weights.
"""
from __future__ import annotations

import copy
import logging
from typing import Optional

import torch
from torch import nn

logger = logging.getLogger(__name__)

# Measured on SPR, 576 x 1536, bf16 activations: int8 kernel 69 / 113 / 253 us for 1 / 4 / 9 rows,
# bf16 AMX matmul ~190 us for 1-16 rows. Above 4 rows the de-quantised matmul wins.
INT8_KERNEL_MAX_ROWS = 4
COMPUTE_DTYPE = torch.bfloat16
INT4_GROUP = 32  # inputs sharing one int4 scale and zero (w4)


def int8_kernel_available() -> bool:
    """True when this torch build has the weight-only int8 CPU kernel (torch >= 2.3)."""
    return hasattr(torch.ops.aten, "_weight_int8pack_mm")


class WeightOnlyLinear(nn.Module):
    """What the int8 and int4 layers share: bf16 in and out, the weight-only kernel for passes of up
    to :data:`INT8_KERNEL_MAX_ROWS` rows, the de-quantised weight above that, then the bias."""

    in_features: int
    out_features: int
    held: Optional[torch.Tensor] = None  # the de-quantised weight, when kept (hold_dequantized)

    def _kernel(self, rows: torch.Tensor) -> torch.Tensor:  # rows: n x in_features, bf16
        raise NotImplementedError

    def dequantized(self) -> torch.Tensor:
        raise NotImplementedError

    def hold_dequantized(self) -> int:
        """Keep the de-quantised bf16 weight for passes over many rows (prompt passes then skip
        de-quantising: faster, at the cost of holding the weight twice); returns its bytes."""
        self.held = self.dequantized()
        return self.held.numel() * self.held.element_size()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(COMPUTE_DTYPE)
        rows = x.numel() // self.in_features
        if rows <= INT8_KERNEL_MAX_ROWS and x.device.type == "cpu":
            out = self._kernel(x.reshape(rows, self.in_features)).reshape(*x.shape[:-1], self.out_features)
        else:
            out = nn.functional.linear(x, self.held if self.held is not None else self.dequantized())
        return out if self.bias is None else out + self.bias


class Int8WeightLinear(WeightOnlyLinear):
    """``nn.Linear`` with int8 weights (per-output-channel scale) and bf16 inputs and outputs."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scales = weight.abs().amax(dim=1).clamp(min=1e-8) / 127.0
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_int8", torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scales", scales.to(COMPUTE_DTYPE))
        bias = None if linear.bias is None else linear.bias.detach().to(COMPUTE_DTYPE)
        self.register_buffer("bias", bias)

    def dequantized(self) -> torch.Tensor:
        """The weight as the int8 kernel sees it, in bf16 (``out_features x in_features``)."""
        return self.weight_int8.to(COMPUTE_DTYPE) * self.scales[:, None]

    def _kernel(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int8pack_mm(rows, self.weight_int8, self.scales)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights, bf16 compute"


def _pack_int4(levels: torch.Tensor) -> torch.Tensor:
    """Levels 0-15 (``out x in``) in the layout of the int4 CPU kernel."""
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(levels.to(torch.int32), 1)


class Int4WeightLinear(WeightOnlyLinear):
    """``nn.Linear`` with int4 weights (asymmetric, one scale and zero per :data:`INT4_GROUP` inputs)
    and bf16 inputs and outputs (``torch.ops.aten._weight_int4pack_mm_for_cpu``).

    The levels are also kept unpacked (one byte each) for passes over many rows, which de-quantise.
    """

    def __init__(self, linear: nn.Linear, group: int = INT4_GROUP) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        self.out_features, self.in_features = weight.shape
        if self.in_features % group:
            raise ValueError(f"in_features {self.in_features} is not a multiple of the int4 group {group}")
        self.group = group
        grouped = weight.view(self.out_features, -1, group)
        low, high = grouped.amin(-1), grouped.amax(-1)
        scale = ((high - low) / 15).clamp(min=1e-8)
        levels = torch.round((grouped - low[..., None]) / scale[..., None]).clamp(0, 15).view(self.out_features, -1)
        self.register_buffer("levels", levels.to(torch.uint8))
        self.register_buffer("weight_int4", _pack_int4(self.levels))
        # The kernel computes (level - 8) * scale + zero, so a group's level 0 is its lowest weight.
        scales_zeros = torch.stack([scale.t(), (low + 8 * scale).t()], dim=-1)  # groups x out x 2
        self.register_buffer("scales_zeros", scales_zeros.to(COMPUTE_DTYPE).contiguous())
        bias = None if linear.bias is None else linear.bias.detach().to(COMPUTE_DTYPE)
        self.register_buffer("bias", bias)

    def dequantized(self) -> torch.Tensor:
        """The weight as the int4 kernel sees it, in bf16 (``out_features x in_features``)."""
        scale = self.scales_zeros[..., 0].t().unsqueeze(-1)  # out x groups x 1
        lowest = self.scales_zeros[..., 1].t().unsqueeze(-1) - 8 * scale  # the weight of level 0
        grouped = self.levels.view(self.out_features, -1, self.group).to(COMPUTE_DTYPE)
        return grouped.mul_(scale).add_(lowest).view(self.out_features, self.in_features)

    def _kernel(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.weight_int4, self.group, self.scales_zeros)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int4 weights (group {self.group}), bf16 compute"


def int4_fits(linear: nn.Linear) -> bool:
    """The int4 kernel packs 16 output rows together and groups the inputs; other shapes stay int8."""
    return linear.out_features % 16 == 0 and linear.in_features % INT4_GROUP == 0


# The tensors of each fusable layer and the dimension along which its output rows lie.
ROW_TENSORS = {
    nn.Linear: {"weight": 0},
    Int8WeightLinear: {"weight_int8": 0, "scales": 0},
    Int4WeightLinear: {"levels": 0, "scales_zeros": 1},  # the packed weight is re-packed (see fuse_rows)
}


def fuse_rows(layers: list) -> nn.Module:
    """One bias-free layer (``nn.Linear``, int8 or int4) computing ``layers`` side by side (their
    outputs concatenated).

    The fused tensors are new; each original layer's tensors are rebound to slices of them, so
    (but for int4's packed copy) no weight is held twice and the original layers keep working.
    """
    kind = type(layers[0])
    if kind not in ROW_TENSORS or any(type(layer) is not kind or layer.bias is not None for layer in layers):
        raise ValueError(f"cannot fuse {[type(layer).__name__ for layer in layers]}")
    fused = copy.copy(layers[0])  # same class and settings; every row tensor is replaced below
    fused._parameters, fused._buffers = dict(layers[0]._parameters), dict(layers[0]._buffers)
    for layer in (fused, *layers):
        if getattr(layer, "held", None) is not None:
            layer.held = None  # a held weight would no longer match the rebound rows
    fused.out_features = sum(layer.out_features for layer in layers)
    for name, dim in ROW_TENSORS[kind].items():
        whole = torch.cat([getattr(layer, name).detach() for layer in layers], dim=dim)
        _rebind(fused, name, whole)
        start = 0
        for layer in layers:
            part = whole.narrow(dim, start, layer.out_features)
            _rebind(layer, name, part if dim == 0 else part.contiguous())  # (scales: small)
            start += layer.out_features
    if kind is Int4WeightLinear:
        # The packing interleaves blocks of rows: packed weights cannot be concatenated, levels can.
        fused._buffers["weight_int4"] = _pack_int4(fused.levels)
    return fused


def _rebind(layer: nn.Module, name: str, tensor: torch.Tensor) -> None:
    if name in layer._parameters:
        layer._parameters[name] = nn.Parameter(tensor, requires_grad=False)
    else:
        layer._buffers[name] = tensor


def quantize_weights(model: nn.Module, bits: int = 8) -> nn.Module:
    """The model in bf16 with every ``nn.Linear`` (the LM head included) holding int8 (``bits=8``)
    or int4 (``bits=4``; int8 for a layer whose shape the int4 kernel does not take) weights, in place.

    GPT-2's ``Conv1D`` layers must be turned into ``nn.Linear`` first (``fastpath.conv1d_to_linear``).
    A tied LM head is untied: the input embedding stays bf16, the output projection becomes int8.
    """
    if not int8_kernel_available():
        raise RuntimeError("fast_path w8 needs torch.ops.aten._weight_int8pack_mm (torch >= 2.3)")
    model.to(COMPUTE_DTYPE)
    replaced = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, name, Int4WeightLinear(child) if bits == 4 and int4_fits(child) else Int8WeightLinear(child))
                replaced += 1
    if getattr(model, "config", None) is not None:
        model.config.tie_word_embeddings = False  # the head is no longer the embedding matrix
    logger.info("w%d: %d linear layers hold int%d weights (bf16 compute)", bits, replaced, bits)
    return model
