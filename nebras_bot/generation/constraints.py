"""Replies without unfillable placeholders: steer decoding away from a ``{placeholder}`` with no value.

A model trained on Bitext writes ``{order_id}`` where a reply needs the customer's order number
(data cleaning put the placeholders there). When the conversation has no order number that reply
cannot be sent: :func:`nebras_bot.generation.placeholders.fill` refuses it and the customer gets the
templated reply. Instead of throwing the whole reply away, two rules keep the model's text:

- **No values at all** (the common case: the customer gave no order number, invoice, name ...):
  the tokens that open a placeholder (every token containing ``{``, and ``}`` with it) are banned
  for the whole reply (:data:`BAN_ALL`), so the model writes its next-best words ("your order").
  What is left of a placeholder it still writes ("order_id") is refused by the guard
  (``placeholder_residue``).
- **Some values**: the model may write a placeholder, and only its *name* says which (``{`` and the
  name are separate tokens: ``" {"``, ``"order"``, ``"_"``, ``"id"``, ``"}"``). Forcing the name to
  an allowed one would put the order number where the model meant the invoice number, so nothing
  is forced. When the finished reply has a placeholder without a value, :func:`continue_without`
  keeps the text before it and decodes again from there with the opening tokens banned for the
  first token only (:data:`BAN_FIRST`), at most ``placeholder_retries`` times.

The guard and ``fill`` still check every reply; these rules only make their refusal rare. A
continuation sees the kept text as part of its prompt, so the no-repeat n-gram rule and the
repetition penalty (generated tokens only) do not count it: a small difference from one pass.
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any, Dict, List, Mapping, Optional, Sequence

from nebras_bot.generation import placeholders
from nebras_bot.generation.prompt import cut_at_end

OPEN, CLOSE = "{", "}"
BAN_ALL = "all"  # no token may open a placeholder
BAN_FIRST = "first"  # the first generated token may not open one
BANS = (BAN_ALL, BAN_FIRST)
# A continuation shorter than this many new tokens is not worth a decoding pass.
MIN_CONTINUATION_TOKENS = 8

_BRACE_TOKENS: Dict[int, List[int]] = {}
_BRACE_LOCK = threading.Lock()


def brace_tokens(tokenizer: Any) -> List[int]:
    """Ids of the tokens whose text contains ``{`` or ``}`` (byte-level BPE and SentencePiece keep
    braces literal). ``}`` is banned with ``{``: kept from opening a placeholder, a model may still
    write the rest of it ("order_id}"), and a reply has no use for a brace."""
    with _BRACE_LOCK:
        ids = _BRACE_TOKENS.get(id(tokenizer))
        if ids is None:
            ids = _BRACE_TOKENS[id(tokenizer)] = sorted(
                i for token, i in tokenizer.get_vocab().items() if OPEN in token or CLOSE in token
            )
        return ids


class PlaceholderBan:
    """The decoder-side rule: which tokens to ban at a step (:data:`BAN_ALL` or :data:`BAN_FIRST`)."""

    def __init__(self, tokenizer: Any, ban: str) -> None:
        if ban not in BANS:
            raise ValueError(f"unknown placeholder ban {ban!r}: use one of {', '.join(BANS)}")
        self.ban = ban
        self.tokens = brace_tokens(tokenizer)

    def banned(self, generated: Sequence[int]) -> List[int]:
        if self.ban == BAN_ALL or not generated:
            return self.tokens
        return []


def ban_for(values: Mapping[str, Any]) -> Optional[str]:
    """The ban to decode with: :data:`BAN_ALL` when no placeholder could be filled, else None."""
    return None if next(iter(placeholders.value_texts(values)), None) is not None else BAN_ALL


def first_unfillable(text: str, values: Mapping[str, Any]) -> Optional[str]:
    """The first placeholder of ``text`` (as written, ``{invoice_id}``) that has no value, or None."""
    match = next(iter(placeholders.unfilled(text, values)), None)
    return match.group(0) if match else None


def continue_without(
    decoder: Any,
    prompt: str,
    completion: Any,
    values: Mapping[str, Any],
    retries: int,
    max_new_tokens: int,
    deadline: Optional[float] = None,
) -> Any:
    """``completion`` with each unfillable placeholder replaced by what the model writes instead.

    The text before the placeholder is kept (from ``completion.raw``, so the prompt + kept text is
    exactly what the model saw) and decoding continues after it with :data:`BAN_FIRST`. Returns the
    last completion with the kept text in front (``text``, ``raw``, ``new_tokens`` of the whole
    reply); unchanged when there is nothing to do or no time or tokens are left.
    """
    for _ in range(retries):
        hole = first_unfillable(completion.text, values)
        if hole is None:
            break
        at = completion.raw.find(hole)
        if at < 0:
            break
        while at > 0 and completion.raw[at - 1] == OPEN:  # "{{name}}": the inner match starts one late
            at -= 1
        kept = completion.raw[:at].rstrip()
        room = max_new_tokens - decoder.count_tokens(kept)
        left = None if deadline is None else deadline - time.perf_counter()
        if room < MIN_CONTINUATION_TOKENS or (left is not None and left <= 0):
            break
        more = decoder.complete(prompt + kept, max_new_tokens=room, time_limit=left, placeholder_ban=BAN_FIRST)
        lead = more.raw[: len(more.raw) - len(more.raw.lstrip())]
        completion = replace(
            more,
            text=cut_at_end(kept + lead + more.text),
            raw=kept + more.raw,
            new_tokens=max_new_tokens - room + more.new_tokens,
            seconds=completion.seconds + more.seconds,
        )
    return completion
