"""A lean forward pass for Llama-style models (SmolLM2), one conversation at a time.

Decoding one token of the 30-layer SmolLM2-135M through transformers' ``LlamaForCausalLM`` runs
about 1,000 small tensor operations and as many Python calls; on one CPU core that costs more than
reading the weights does (profiled on a Sapphire Rapids core, docs/performance.md: 52 ms per step
with int8 weights through transformers, 30 ms through this module with the same weights). This
module computes the same function with fewer, larger operations:

- the query, key and value projections are one matrix product, and so are the gate and up
  projections of the MLP (``weightonly.fuse_rows``, once, when the model is wrapped);
- keys and values go into one preallocated cache (:class:`LeanCache`) by index, not by
  concatenation; cropping it (rejected lookup drafts, prompt reuse) only moves its length;
- the rotary cos/sin table is computed once by the model's own rotary embedding;
- query heads that share a key/value head attend to it together (no key/value expansion).

:class:`LeanLlama` answers the calls :class:`nebras_bot.generation.batching.GreedyEngine`,
:class:`nebras_bot.generation.fastpath.FastDecoder` and prompt-lookup decoding make
(``model(input_ids, attention_mask, position_ids, past_key_values, use_cache, logits_to_keep)``,
``cache.get_seq_length()``, ``cache.crop(n)``), for one unpadded row. Batches (the batching worker)
stay with the transformers model. Linear layers are whatever the wrapped model holds: ``nn.Linear``
(fp32/bf16) or the int8/int4 layers of :mod:`nebras_bot.generation.weightonly` (``w8``/``w4``). In fp32 it gives
``model.generate``'s tokens (``tests/performance/test_lean.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from nebras_bot.generation.weightonly import WeightOnlyLinear, fuse_rows

LEAN_MODEL_TYPES = ("llama",)
# Rope types whose cos/sin depend on the position only (a table can be computed once).
STATIC_ROPE_TYPES = ("default", "linear", "llama3")
INITIAL_CAPACITY = 1024  # cache positions allocated first; doubled when a pass needs more


def lean_supported(model: nn.Module) -> bool:
    """Whether :class:`LeanLlama` computes exactly what ``model`` computes."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in LEAN_MODEL_TYPES:
        return False
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    heads, hidden = config.num_attention_heads, config.hidden_size
    return (
        rope.get("rope_type", "default") in STATIC_ROPE_TYPES
        and not getattr(config, "attention_bias", False)
        and not getattr(config, "mlp_bias", False)
        and getattr(config, "hidden_act", None) == "silu"
        and getattr(config, "pretraining_tp", 1) == 1
        and (getattr(config, "head_dim", None) or hidden // heads) * heads == hidden
    )


class LeanCache:
    """Keys and values of every layer for one row, in preallocated tensors (``layers x kv_heads x capacity x dim``)."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype, capacity: Optional[int] = None,
                 device: Optional[torch.device] = None) -> None:
        capacity = capacity or INITIAL_CAPACITY
        self.keys = torch.zeros(layers, 1, kv_heads, capacity, head_dim, dtype=dtype, device=device)
        self.values = torch.zeros_like(self.keys)
        self.length = 0

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length

    def crop(self, length: int) -> None:
        """Forget every position from ``length`` on (negative: that many from the end)."""
        self.length = max(0, self.length + length if length < 0 else min(length, self.length))

    def reserve(self, length: int) -> None:
        capacity = self.keys.shape[3]
        if length <= capacity:
            return
        while capacity < length:
            capacity *= 2
        grown = torch.zeros(*self.keys.shape[:3], capacity, self.keys.shape[4], dtype=self.keys.dtype, device=self.keys.device)
        grown_values = torch.zeros_like(grown)
        grown[:, :, :, : self.length] = self.keys[:, :, :, : self.length]
        grown_values[:, :, :, : self.length] = self.values[:, :, :, : self.length]
        self.keys, self.values = grown, grown_values


@dataclass
class LeanOutput:
    logits: torch.Tensor
    past_key_values: LeanCache


class LeanLlama(nn.Module):
    """The forward pass of a Llama-style causal LM for one unpadded row (see the module docstring)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not lean_supported(model):
            raise ValueError("LeanLlama needs a Llama-style model (see lean_supported)")
        config = model.config
        self.config = config
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads or self.heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = config.rms_norm_eps
        decoder = model.model
        self.embed = decoder.embed_tokens
        self.dtype = self.embed.weight.dtype
        self.device = self.embed.weight.device
        self.rotary = decoder.rotary_emb
        self.norm_weight = decoder.norm.weight.detach().float()
        self.head = model.lm_head
        self.blocks = []
        for layer in decoder.layers:
            attention, mlp = layer.self_attn, layer.mlp
            self.blocks.append((
                layer.input_layernorm.weight.detach().float(),
                fuse_rows([attention.q_proj, attention.k_proj, attention.v_proj]),
                attention.o_proj,
                layer.post_attention_layernorm.weight.detach().float(),
                fuse_rows([mlp.gate_proj, mlp.up_proj]),
                mlp.down_proj,
            ))
        self.scaling = self.head_dim ** -0.5
        self._cos = self._sin = torch.empty(0)

    def hold_dequantized(self) -> int:
        """With int8/int4 weights: keep the body's weights de-quantised too, so prompt passes
        (more rows than the weight-only kernels take) skip de-quantising them. The LM head is
        left out: prompt passes compute the last position's logits only. Returns the bytes held."""
        held = 0
        for block in self.blocks:
            for layer in block:
                if isinstance(layer, WeightOnlyLinear):
                    held += layer.hold_dequantized()
        return held

    # ------------------------------------------------------------------ pieces

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """RMSNorm of the fp32 residual stream, scaled, in the model's dtype (one fused kernel)."""
        return nn.functional.rms_norm(x, (x.shape[-1],), weight, self.eps).to(self.dtype)

    def _rope_table(self, length: int) -> None:
        if self._cos.shape[0] >= length:
            return
        size = max(length, 2 * self._cos.shape[0], INITIAL_CAPACITY)
        positions = torch.arange(size, dtype=torch.long, device=self.device).unsqueeze(0)
        probe = torch.empty(1, dtype=self.dtype, device=self.device)
        cos, sin = self.rotary(probe, positions)
        # rotate_half(x) * sin == roll(x, half) * sin with its first half negated
        signed_sin = sin[0].clone()
        signed_sin[:, : self.head_dim // 2] *= -1
        self._cos, self._sin = cos[0].unsqueeze(1), signed_sin.unsqueeze(1)  # positions x 1 x dim

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
        """Rotary embedding of ``x`` (tokens x heads x dim): x * cos + rotate_half(x) * sin."""
        return torch.addcmul(x * cos, torch.roll(x, self.head_dim // 2, dims=-1), signed_sin)

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        past_key_values: Any = None,
        use_cache: bool = True,
        logits_to_keep: int = 0,
        **_: Any,
    ) -> LeanOutput:
        if input_ids.shape[0] != 1 or (attention_mask is not None and not bool(attention_mask.all())):
            raise ValueError("LeanLlama decodes one unpadded row; batches go through the transformers model")
        cache = past_key_values
        if not isinstance(cache, LeanCache):
            if cache is not None and cache.get_seq_length() > 0:
                raise ValueError("LeanLlama continues only its own LeanCache")
            cache = LeanCache(len(self.blocks), self.kv_heads, self.head_dim, self.dtype, device=self.device)
        base, count = cache.length, input_ids.shape[1]
        if position_ids is not None and int(position_ids[0, 0]) != base:
            raise ValueError(f"position {int(position_ids[0, 0])} does not follow the {base} cached positions")
        end = base + count
        cache.reserve(end)
        self._rope_table(end)
        cos, sin = self._cos[base:end], self._sin[base:end]
        # Query head h uses key/value head h // group; a group's queries attend together, so
        # one pass over `count` tokens is a (group * count)-row query per key/value head.
        group = self.heads // self.kv_heads
        mask = None
        if count > 1:
            allowed = torch.arange(end, device=self.device).unsqueeze(0) <= torch.arange(base, end, device=self.device).unsqueeze(1)  # causal
            mask = allowed.repeat(group, 1)
        # The residual stream is kept in fp32 (transformers keeps it in the model's dtype): fewer
        # conversions per layer, and no bf16 rounding of the running sum.
        x = self.embed(input_ids[0]).float()
        q_size, kv_size = self.heads * self.head_dim, self.kv_heads * self.head_dim
        for index, (norm_in, qkv_proj, o_proj, norm_post, gate_up_proj, down_proj) in enumerate(self.blocks):
            qkv = qkv_proj(self._norm(x, norm_in))
            # Queries and keys get their rotary embedding together (tokens x (heads + kv_heads) x dim).
            qk = self._rotate(qkv[:, : q_size + kv_size].view(count, -1, self.head_dim), cos, sin)
            q, k = qk[:, : self.heads].transpose(0, 1), qk[:, self.heads :].transpose(0, 1)
            v = qkv[:, q_size + kv_size :].view(count, self.kv_heads, self.head_dim).transpose(0, 1)
            cache.keys[index, 0, :, base:end] = k
            cache.values[index, 0, :, base:end] = v
            grouped = q.reshape(1, self.kv_heads, group * count, self.head_dim)  # 4-d: the fused CPU kernel
            attended = nn.functional.scaled_dot_product_attention(
                grouped, cache.keys[index, :, :, :end], cache.values[index, :, :, :end], attn_mask=mask, scale=self.scaling
            )
            attended = attended.reshape(self.heads, count, self.head_dim).transpose(0, 1).reshape(count, q_size)
            x = x + o_proj(attended)
            gate_up = gate_up_proj(self._norm(x, norm_post))
            gate, up = gate_up.chunk(2, dim=-1)
            x = x + down_proj(nn.functional.silu(gate) * up)
        cache.length = end
        if logits_to_keep:
            x = x[-logits_to_keep:]
        logits = self.head(self._norm(x, self.norm_weight))
        return LeanOutput(logits=logits.unsqueeze(0), past_key_values=cache)

