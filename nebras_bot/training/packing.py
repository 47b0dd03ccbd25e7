"""Packed rows whose examples attend only to themselves.

Packing puts several training examples into one row of ``max_length`` tokens. With plain causal
attention every example would also attend to the examples before it in its row, and its positions
would continue from theirs. At inference a prompt starts at position 0 and sees nothing else, so
a packed batch carries the examples' boundaries and the model is trained accordingly:

- ``dataset.collate`` flattens the packed rows of a batch into one row without padding and adds
  ``position_ids`` that restart at 0 for every example (from which transformers'
  ``flash_attention_2`` finds the examples by itself on a GPU), plus the boundaries as
  ``cu_seq_lens_q`` (the name transformers uses for them);
- ``nebras_packed_sdpa`` (this module) is transformers' ``sdpa`` attention run once per example
  when the boundaries are given: causal within the example, nothing across. It is also cheaper
  than one causal pass over the whole row (two 380-token passes, forward and backward: 51 ms
  against 70 ms for one 760-token pass per layer, bf16, 1 thread). Without boundaries
  (validation batches, generation) it is ``sdpa`` unchanged.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Tuple

if TYPE_CHECKING:  # torch is imported where it is used: importing the trainer stays light
    import torch

ATTENTION_NAME = "nebras_packed_sdpa"
BOUNDARIES = "cu_seq_lens_q"  # 0, end of example 1, end of example 2, ..., row length
POSITIONS = "position_ids"


def segment_attention(
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
    """``sdpa`` attention; with ``cu_seq_lens_q``, causal attention within each example only."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    boundaries = kwargs.pop(BOUNDARIES, None)
    if boundaries is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    if query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        raise ValueError("packed attention expects one flattened row without a KV cache")
    edges = boundaries.tolist()
    if edges[0] != 0 or edges[-1] != query.shape[2]:
        raise ValueError(f"example boundaries {edges[:3]}...{edges[-1:]} do not cover the row of {query.shape[2]} tokens")
    parts = [
        sdpa_attention_forward(
            module, query[:, :, start:end], key[:, :, start:end], value[:, :, start:end], None,
            dropout=dropout, scaling=scaling, is_causal=True,
        )[0]
        for start, end in zip(edges[:-1], edges[1:])
        if end > start
    ]
    return torch.cat(parts, dim=1), None  # batch x tokens x heads x dim, as sdpa returns it


def use_segment_attention(model: torch.nn.Module) -> bool:
    """Switch a model that runs ``sdpa`` to ``nebras_packed_sdpa`` (in place); True when switched.

    Models on another attention keep it: ``flash_attention_2`` reads the boundaries itself, and
    ``eager`` ignores them (its packed examples then see each other, as before)."""
    from nebras_bot.generation.attention import use_sdpa_variant

    return use_sdpa_variant(model, ATTENTION_NAME, segment_attention)


def to_device(tensors: dict, device: Any) -> dict:
    """A collated batch on ``device``, its example boundaries excepted: ``segment_attention`` reads
    them in Python at every layer, and on a GPU each read of a device tensor waits for the GPU to
    finish (measured on an H100, SmolLM2-135M's shape: 799 ms per step with the boundaries on the
    GPU, 337 ms with them on the CPU)."""
    return {name: value if name == BOUNDARIES else value.to(device) for name, value in tensors.items()}


def model_inputs(tensors: dict) -> dict:
    """The keyword arguments of a collated batch that the model's forward takes besides the ids."""
    return {name: tensors[name] for name in ("attention_mask", POSITIONS, BOUNDARIES) if name in tensors}
