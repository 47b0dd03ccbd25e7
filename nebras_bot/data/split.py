"""Stratified train/validation/test split by intent with a fixed seed."""
from __future__ import annotations

import random
from typing import Dict, List, Sequence

from nebras_bot.data.dedup import group_key
from nebras_bot.data.records import Dialogue

TRAIN, VALIDATION, TEST = "train", "validation", "test"
SPLITS = (TRAIN, VALIDATION, TEST)


def split_counts(size: int, validation_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """How many of ``size`` examples go to train, validation and test.

    Rounded per stratum; a stratum of 3 or more always gives at least one example to each held-out
    split that has a non-zero fraction, and train always keeps at least one.
    """
    n_val = round(size * validation_fraction)
    n_test = round(size * test_fraction)
    if size >= 3:
        if validation_fraction > 0:
            n_val = max(1, n_val)
        if test_fraction > 0:
            n_test = max(1, n_test)
    while n_val + n_test >= size and (n_val or n_test):
        if n_test >= n_val and n_test:
            n_test -= 1
        else:
            n_val -= 1
    return size - n_val - n_test, n_val, n_test


def stratified_split(
    dialogues: Sequence[Dialogue], validation_fraction: float, test_fraction: float, seed: int
) -> Dict[str, List[Dialogue]]:
    """``{"train": [...], "validation": [...], "test": [...]}``, stratified by first-turn intent.

    Deterministic: the same dialogues and seed always give the same split, whatever their order.
    """
    groups: Dict[str, List[Dialogue]] = {}
    for dialogue in sorted(dialogues, key=lambda d: d.id):
        groups.setdefault(group_key(dialogue), []).append(dialogue)
    result: Dict[str, List[Dialogue]] = {name: [] for name in SPLITS}
    for name in sorted(groups):
        members = groups[name]
        random.Random(f"{seed}:{name}").shuffle(members)
        n_train, n_val, _ = split_counts(len(members), validation_fraction, test_fraction)
        result[TRAIN].extend(members[:n_train])
        result[VALIDATION].extend(members[n_train : n_train + n_val])
        result[TEST].extend(members[n_train + n_val :])
    return result
