"""Corpus drafts for lookup decoding: what the replies the model was trained on say next.

Prompt lookup (:mod:`nebras_bot.generation.lookup`) guesses the next tokens by copying from the
prompt. A fine-tuned support model also repeats the phrasing of its training replies ("I understand
your concern ...", "please follow these steps:"), which is often not in the prompt. This module
keeps, for every context of ``n`` tokens seen in those replies (``n`` = 3, then 2), the token that
most often followed it, and chains those to a draft of up to ``k`` tokens (an n-gram table, the
retrieval-based drafting of REST, He et al. 2023, with the model's own training replies as the
datastore).

A draft is only a guess: the model verifies it in one pass and keeps the greedy tokens
(:func:`nebras_bot.generation.lookup.decode_with_lookup`), so the reply is the same as without
drafts. A poor guess costs a longer pass; an entry is therefore kept only when its continuation was
seen at least :data:`DRAFT_MIN_COUNT` times and in at least :data:`DRAFT_MIN_SHARE` of the context's
occurrences. Built from the model's exemplar index (its training replies) when the decoder is made:
1.5-3 s for the 3,286 replies of the shipped model (docs/performance.md).
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Dict, Iterable, List, Sequence, Tuple

DRAFT_ORDERS = (3, 2)  # context lengths looked up, longest first
DRAFT_MIN_COUNT = 2  # a continuation seen once is an anecdote, not a pattern
DRAFT_MIN_SHARE = 0.5  # ... and it must follow its context at least this often


class CorpusDrafts:
    """An n-gram table over token sequences: context tuple -> the most frequent next token."""

    def __init__(
        self,
        sequences: Iterable[Sequence[int]],
        orders: Sequence[int] = DRAFT_ORDERS,
        min_count: int = DRAFT_MIN_COUNT,
        min_share: float = DRAFT_MIN_SHARE,
    ) -> None:
        if not orders or any(n < 1 for n in orders):
            raise ValueError(f"orders must be positive context lengths, got {orders!r}")
        self.orders = tuple(sorted(set(orders), reverse=True))
        sequences = [list(sequence) for sequence in sequences]
        self.tables: Dict[int, Dict[Tuple[int, ...], int]] = {
            n: _table(sequences, n, min_count, min_share) for n in self.orders
        }

    @classmethod
    def from_texts(cls, tokenizer: Any, texts: Iterable[str], suffix: str = "", **options: Any) -> "CorpusDrafts":
        """The table over ``texts`` tokenised as they appear in a completion (a leading space, then
        the text and ``suffix``, e.g. the end-of-turn marker)."""
        texts = [f" {text.strip()}{suffix}" for text in texts if text and text.strip()]
        if not texts:
            raise ValueError("corpus drafts need at least one non-empty text")
        return cls(tokenizer(texts, add_special_tokens=False).input_ids, **options)

    def __len__(self) -> int:
        return sum(len(table) for table in self.tables.values())

    def next_token(self, context: Sequence[int]) -> int | None:
        """The table's guess after ``context`` (longest known context wins), or None."""
        for n in self.orders:
            if len(context) >= n:
                token = self.tables[n].get(tuple(context[len(context) - n :]))
                if token is not None:
                    return token
        return None

    def draft(self, context: Sequence[int], k: int) -> List[int]:
        """Up to ``k`` guessed tokens after ``context``, each guessed after the ones before it."""
        longest = self.orders[0]
        window = list(context[max(0, len(context) - longest) :])
        guessed: List[int] = []
        while len(guessed) < k:
            token = self.next_token(window)
            if token is None:
                break
            guessed.append(token)
            window = (window + [token])[-longest:]
        return guessed


def _table(sequences: List[List[int]], n: int, min_count: int, min_share: float) -> Dict[Tuple[int, ...], int]:
    followers: Counter = Counter()
    contexts: Counter = Counter()
    for sequence in sequences:
        for end in range(n, len(sequence)):
            context = tuple(sequence[end - n : end])
            followers[context + (sequence[end],)] += 1
            contexts[context] += 1
    best: Dict[Tuple[int, ...], Tuple[int, int]] = {}
    for gram, count in followers.items():
        context = gram[:-1]
        if count >= min_count and count >= min_share * contexts[context] and count > best.get(context, (0, 0))[0]:
            best[context] = (count, gram[-1])
    return {context: token for context, (count, token) in best.items()}
