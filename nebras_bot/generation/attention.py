"""Grouped-query attention for one-token decoding steps without copying the KV cache.

Llama-style models (SmolLM2: 9 query heads share 3 key/value heads) run transformers' ``sdpa``
attention. When an attention mask is passed (a left-padded batch always has one), transformers
expands every key/value head to the query heads it serves (``repeat_kv``) before calling
``scaled_dot_product_attention``: a copy of the whole KV cache, per layer and per decoding step.
For a batch of 32 conversations with ~270 cached tokens that copy was half the time of a step
(profiled on the shipped model, docs/performance.md).

``nebras_sdpa`` computes the same attention without the copy when the query is one token: the
query heads that share a key/value head become that head's queries
(``batch x kv_heads x group x dim``), which attend to the unexpanded cache under the same padding
mask. Every other case (prompt passes, draft verification, models without grouped heads) goes to
transformers' own ``sdpa`` function unchanged. The mask is built exactly as for ``sdpa``.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch

ATTENTION_NAME = "nebras_sdpa"
BASE_ATTENTION = "sdpa"


def grouped_decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    dropout: float = 0.0,
    scaling: Optional[float] = None,
    is_causal: Optional[bool] = None,
    **kwargs: Any,
) -> Tuple[torch.Tensor, None]:
    """``sdpa`` attention; a one-token query of a grouped-query model skips the key/value expansion."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    if length != 1 or kv_heads == heads or (module.training and dropout > 0):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    # Query head h uses key/value head h // group (transformers' repeat_kv order).
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, dim)
    # A batch x 1 x 1 x keys mask broadcasts over the key/value heads and the group.
    output = torch.nn.functional.scaled_dot_product_attention(grouped, key, value, attn_mask=attention_mask, scale=scaling)
    return output.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


def use_sdpa_variant(model: torch.nn.Module, name: str, function) -> bool:
    """Register ``function`` as attention ``name`` (with ``sdpa``'s mask builder) and switch a model
    that runs ``sdpa`` to it, in place; True when switched. Models on another attention keep it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != BASE_ATTENTION:
        return False
    AttentionInterface.register(name, function)
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[BASE_ATTENTION])
    model.set_attn_implementation(name)
    return model.config._attn_implementation == name


def use_grouped_decode_attention(model: torch.nn.Module) -> bool:
    """Switch a grouped-query model that runs ``sdpa`` to ``nebras_sdpa`` (in place); True when switched."""
    config = getattr(model, "config", None)
    heads = getattr(config, "num_attention_heads", None)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    if not heads or kv_heads == heads:
        return False
    return use_sdpa_variant(model, ATTENTION_NAME, grouped_decode_attention)
