"""Exact and near-duplicate removal.

Two dialogues are *exact duplicates* when they have the same intent and their texts are equal
after lower-casing, masking digits
and dropping punctuation (``cancel order 12345`` and ``Cancel order 67890!`` with the same reply are
one example twice). They are *near duplicates* when, within the same intent, the TF-IDF cosine
similarity of their word uni/bi-grams is at least the threshold. The first dialogue (in id order)
is kept; what was removed is returned with the reason, for the data card.
"""
from __future__ import annotations

import re
from typing import Dict, List, Sequence, Tuple

from nebras_bot.data.records import Dialogue

EXACT = "exact_duplicate"
NEAR = "near_duplicate"
_NON_WORD = re.compile(r"[^\w\s{}]+")
_DIGITS = re.compile(r"\d")
_SPACES = re.compile(r"\s+")


def dedup_key(text: str) -> str:
    """The comparison form of a text: lower case, digits as 0, no punctuation, single spaces."""
    text = _DIGITS.sub("0", text.lower())
    text = _NON_WORD.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def dialogue_text(dialogue: Dialogue) -> str:
    return " || ".join(f"{turn.role}: {turn.text}" for turn in dialogue.turns)


def group_key(dialogue: Dialogue) -> str:
    """The stratum of a dialogue: the intent of its first user turn (``unknown`` when none)."""
    for turn in dialogue.turns:
        if turn.role == "user" and turn.intent:
            return turn.intent
    return "unknown"


def remove_duplicates(
    dialogues: Sequence[Dialogue], near_threshold: float = 0.92
) -> Tuple[List[Dialogue], List[Tuple[str, str, str]]]:
    """``(kept, removed)``; ``removed`` holds ``(dialogue id, reason, id of the kept twin)``."""
    ordered = sorted(dialogues, key=lambda d: d.id)
    seen: Dict[str, str] = {}
    kept: List[Dialogue] = []
    removed: List[Tuple[str, str, str]] = []
    for dialogue in ordered:
        key = group_key(dialogue) + "\x1f" + dedup_key(dialogue_text(dialogue))
        if key in seen:
            removed.append((dialogue.id, EXACT, seen[key]))
            continue
        seen[key] = dialogue.id
        kept.append(dialogue)
    if near_threshold >= 1.0 or len(kept) < 2:
        return kept, removed
    by_group: Dict[str, List[Dialogue]] = {}
    for dialogue in kept:
        by_group.setdefault(group_key(dialogue), []).append(dialogue)
    dropped = set()
    from sklearn.feature_extraction.text import TfidfVectorizer

    for group in by_group.values():
        if len(group) < 2:
            continue
        texts = [dedup_key(dialogue_text(d)) for d in group]
        matrix = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform(texts)
        similarity = (matrix @ matrix.T).tocsr()
        for i in range(len(group)):
            if group[i].id in dropped:
                continue
            row = similarity.getrow(i)
            for j, score in zip(row.indices, row.data):
                if j > i and score >= near_threshold and group[j].id not in dropped:
                    dropped.add(group[j].id)
                    removed.append((group[j].id, NEAR, group[i].id))
    return [d for d in kept if d.id not in dropped], removed
