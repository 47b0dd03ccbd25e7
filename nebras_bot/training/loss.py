"""The training loss: mean cross-entropy over the agent's tokens only (labels not ``-100``)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from nebras_bot.training import dataset as ds
from nebras_bot.training import packing


def scored_loss(model, tensors: Dict[str, Any], fast: bool):
    """``(mean loss, scored tokens)`` over the label positions that are not ``-100``.

    ``fast``: run the model body, then the output layer only at scored positions. The logits of
    a 50k-token vocabulary at every position are most of a small model's time and memory, and
    prompt positions are never scored, so this is the same loss for much less work. Multi-process
    runs use the plain ``model(...)`` call, which keeps the distributed wrapper's hooks.
    """
    import torch

    labels = tensors["labels"][:, 1:]
    mask = labels != ds.IGNORE_INDEX
    if fast:
        core = model.get_base_model() if hasattr(model, "get_base_model") else model
        body = getattr(core, core.base_model_prefix)
        hidden = body(input_ids=tensors["input_ids"], **packing.model_inputs(tensors)).last_hidden_state
        logits = core.get_output_embeddings()(hidden[:, :-1][mask])
    else:
        full = model(input_ids=tensors["input_ids"], **packing.model_inputs(tensors)).logits
        logits = full[:, :-1][mask]
    loss = torch.nn.functional.cross_entropy(logits.float(), labels[mask])
    return loss, int(mask.sum())


def batch_loss(model, batch: List[ds.Encoded], pad_id: int, accelerator, fast: bool):
    """``(mean loss, scored tokens, tensors)`` of one batch: collated onto the accelerator's device
    (``packing.to_device``), under its autocast, with the attention kernels for that device
    (``generation.device.attention_kernels``). The training step, validation and the training
    benchmark all go through here."""
    from nebras_bot.generation.device import attention_kernels

    tensors = packing.to_device(ds.collate(batch, pad_id), accelerator.device)
    with accelerator.autocast(), attention_kernels(accelerator.device):
        loss, scored = scored_loss(model, tensors, fast)
    return loss, scored, tensors


def evaluate_loss(model, rows: List[ds.Encoded], batch_size: int, pad_id: int, accelerator, max_batches: Optional[int]) -> float:
    """Mean token loss on ``rows`` (scored tokens only), in eval mode, without gradients."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for number, batch in enumerate(ds.batches(rows, batch_size, 0, 0, shuffle=False)):
            if max_batches is not None and number >= max_batches:
                break
            loss, scored, _ = batch_loss(model, batch, pad_id, accelerator, accelerator.num_processes == 1)
            total += loss.item() * scored
            count += scored
    model.train()
    return total / max(1, count)
