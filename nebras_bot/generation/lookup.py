"""Prompt-lookup decoding: greedy decoding that verifies several guessed tokens per model pass.

A support reply copies a lot from its prompt: the templated reply it rephrases, the retrieved
exemplars, order ids, the customer's words. So the tokens that followed the latest occurrence of
the last few generated tokens, earlier in the prompt or the reply, are a good guess for what comes
next (a *draft*). One model pass over ``[pending token] + draft`` gives the logits after every
draft position; the greedy token at each position is computed with the same decoding rules
(repetition penalty and no-repeat n-grams over the generated tokens, stop markers, eos, limits) as
:class:`nebras_bot.generation.batching.GreedyEngine`, draft tokens are accepted while they equal
it, the first different greedy token is kept too, and the KV cache is cropped to what was accepted.

On a 2-core CPU decoding one token is bound by reading the weights, so a pass over 1 + k tokens
costs little more than a pass over one: every accepted draft token is a decoding step saved. The
reply is the greedy reply: the same tokens as one-token-at-a-time decoding, up to floating-point
rounding of a several-token pass against a one-token pass (in fp32 identical on the checked
validation prompts, docs/performance.md). Single prompts only (``FastDecoder``); the batching worker
decodes one token per row and step.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import torch

LOOKUP_TOKENS = 8  # most draft tokens verified per model pass
LOOKUP_MAX_NGRAM = 3  # the longest suffix of the text so far that is looked up
LOOKUP_MIN_NGRAM = 2  # a single repeated token is a poor guess: no draft (a plain one-token step)


def draft_tokens(
    context: Sequence[int], k: int = LOOKUP_TOKENS, max_ngram: int = LOOKUP_MAX_NGRAM, min_ngram: int = LOOKUP_MIN_NGRAM,
    search_end: Optional[int] = None,
) -> List[int]:
    """The ``k`` tokens that followed the latest earlier occurrence of the longest matching suffix.

    ``context`` is the prompt followed by the tokens generated so far; the suffix of ``n`` tokens
    (``max_ngram`` down to ``min_ngram``) is looked up right to left, among occurrences that end
    before ``search_end`` (default: anywhere before the suffix); no match gives no draft.
    """
    length = len(context)
    if k <= 0:
        return []
    last_end = length - 2 if search_end is None else min(length - 2, search_end - 1)
    for n in range(min(max_ngram, length - 1), min_ngram - 1, -1):
        suffix = list(context[length - n :])
        last = suffix[-1]
        for end in range(last_end, n - 2, -1):  # end = index of the occurrence's last token
            if context[end] == last and list(context[end - n + 1 : end + 1]) == suffix:
                draft = list(context[end + 1 : end + 1 + k])
                if draft:
                    return draft
                break
    return []


def propose(context: Sequence[int], k: int, search_end: Optional[int] = None, corpus: Any = None) -> List[int]:
    """The draft to verify next: copied from the prompt when the text so far recurs there, else (or
    when the corpus guesses further) the :class:`nebras_bot.generation.drafts.CorpusDrafts` guess."""
    draft = draft_tokens(context, k, search_end=search_end)
    if corpus is not None and len(draft) < k:
        guess = corpus.draft(context, k)
        if len(guess) > len(draft):
            return guess
    return draft


def decode_with_lookup(engine: Any, row: Any, prompt: List[int], logits: torch.Tensor, cache: Any,
                       k: int = LOOKUP_TOKENS, corpus: Any = None) -> Tuple[Any, int]:
    """Greedy-decode ``row`` after its prompt pass (``engine.prefill``), verifying drafts.

    ``logits`` are the prompt pass's last logits (1 x vocab); ``cache`` holds the prompt's KV.
    Fills ``row.generated`` and ``row.stopped_by``; returns the cache, which then holds the prompt
    and every generated token but the last one (as after ``GreedyEngine.decode_rows``), and the
    number of model passes after the prompt pass. ``corpus`` (a ``CorpusDrafts``) adds guesses
    from the model's training replies where the prompt has none.
    """
    import time

    generated = row.generated
    token = _choose(engine, logits[0], row)
    generated.append(token)
    row.stopped_by = engine.stop_reason(row, token, time.perf_counter())
    passes = 0
    # With a no-repeat n-gram rule, continuing an earlier *generated* passage is forbidden after a
    # few tokens, so drafts come from the prompt only (the template, exemplars, the customer's words).
    search_end = len(prompt) if engine.settings.no_repeat_ngram_size > 0 else None
    while row.stopped_by is None:
        room = row.request.max_new_tokens - len(generated)
        draft = propose(prompt + generated, min(k, max(0, room - 1)), search_end, corpus)
        feed = [generated[-1]] + draft
        base = cache.get_seq_length()
        device = engine.device
        ids = torch.tensor([feed], dtype=torch.long, device=device)
        positions = torch.arange(base, base + len(feed), dtype=torch.long, device=device).unsqueeze(0)
        mask = torch.ones((1, base + len(feed)), dtype=torch.long, device=device)
        output = engine.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                              past_key_values=cache, use_cache=True)
        cache, step_logits = output.past_key_values, output.logits[0]
        passes += 1
        accepted = len(feed)  # positions of ``feed`` whose KV stays in the cache
        for j in range(len(feed)):
            token = _choose(engine, step_logits[j], row)
            generated.append(token)
            row.stopped_by = engine.stop_reason(row, token, time.perf_counter())
            if row.stopped_by is not None or j == len(draft) or token != draft[j]:
                accepted = j + 1
                break
        if accepted < len(feed):
            cache.crop(base + accepted)
    return cache, passes


def _choose(engine: Any, scores: torch.Tensor, row: Any) -> int:
    seen = torch.tensor([row.generated], dtype=torch.long, device=scores.device).reshape(1, len(row.generated))
    processed = engine.process(scores.float().unsqueeze(0), seen, [row])
    return int(torch.argmax(processed, dim=-1)[0])
