"""Perplexity and bits per byte of reference replies under a causal language model.

Each reference is scored as the model would have to produce it at serving time: conditioned on the
prompt (built by ``nebras_bot.generation.prompt.build_prompt``), the completion tokens are
``" " + reply + "<|end|>"`` (``build_training_pair``'s completion). Only completion tokens count:

    perplexity    = exp(sum of token NLLs / number of completion tokens)
    bits_per_byte = sum of token NLLs / ln(2) / number of UTF-8 bytes of the completions

Bits per byte does not depend on the tokenizer, so models with different vocabularies compare.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

IGNORE_INDEX = -100


@dataclass
class PerplexityResult:
    nll_sum: float  # nats
    tokens: int
    bytes: int

    @property
    def perplexity(self) -> Optional[float]:
        return math.exp(self.nll_sum / self.tokens) if self.tokens else None

    @property
    def bits_per_byte(self) -> Optional[float]:
        return self.nll_sum / math.log(2) / self.bytes if self.bytes else None


def _encode(tokenizer, text: str) -> List[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_pair(tokenizer, prompt: str, completion: str, max_tokens: int) -> Tuple[List[int], int]:
    """Token ids of prompt + completion and the index where the completion starts.

    Prompt and completion are tokenised separately (as training does, so the loss mask falls on a
    token boundary). When too long, the prompt is cut from the left; the completion is kept (cut
    from the right only when it alone exceeds the budget). At least one context token is kept.
    """
    prompt_ids = _encode(tokenizer, prompt)
    completion_ids = _encode(tokenizer, completion)
    if not prompt_ids:
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        prompt_ids = [start]
    completion_ids = completion_ids[: max(1, max_tokens - 1)]
    room = max(1, max_tokens - len(completion_ids))
    prompt_ids = prompt_ids[-room:]
    return prompt_ids + completion_ids, len(prompt_ids)


def _model_max_tokens(model, requested: int) -> int:
    config = getattr(model, "config", None)
    limit = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    return min(requested, int(limit)) if limit else requested


def score(
    model,
    tokenizer,
    pairs: Iterable[Tuple[str, str]],
    batch_size: int = 8,
    max_tokens: int = 512,
    progress=None,
) -> PerplexityResult:
    """Sum the NLL of every completion given its prompt. ``pairs`` = ``(prompt, completion)``.

    ``progress`` (optional) is called with the number of pairs done after each batch.
    """
    import torch

    max_tokens = _model_max_tokens(model, max_tokens)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id or 0
    device = next(model.parameters()).device
    pairs = list(pairs)
    result = PerplexityResult(0.0, 0, 0)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(pairs), batch_size):
            batch = pairs[start : start + batch_size]
            encoded = [encode_pair(tokenizer, p, c, max_tokens) for p, c in batch]
            width = max(len(ids) for ids, _ in encoded)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
            for row, (ids, completion_start) in enumerate(encoded):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention[row, : len(ids)] = 1
                labels[row, completion_start : len(ids)] = torch.tensor(ids[completion_start:])
            with torch.no_grad():
                logits = model(
                    input_ids=input_ids.to(device), attention_mask=attention.to(device)
                ).logits.float()
            targets = labels[:, 1:].to(device)
            losses = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)),
                targets.reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
            result.nll_sum += float(losses)
            result.tokens += int((targets != IGNORE_INDEX).sum())
            result.bytes += sum(len(c.encode("utf-8")) for _, c in batch)
            if progress is not None:
                progress(len(batch))
    finally:
        model.train(was_training)
    return result


def token_log_probs_by_hand(model, tokenizer, prompt: str, completion: str) -> List[float]:
    """Reference implementation for tests: one forward pass per completion token, no batching."""
    import torch

    ids, start = encode_pair(tokenizer, prompt, completion, _model_max_tokens(model, 10**6))
    values = []
    model.eval()
    with torch.no_grad():
        for position in range(start, len(ids)):
            logits = model(input_ids=torch.tensor([ids[:position]])).logits[0, -1].float()
            values.append(float(torch.log_softmax(logits, dim=-1)[ids[position]]))
    return values


def sum_nll(values: Sequence[float]) -> float:
    return -sum(values)
