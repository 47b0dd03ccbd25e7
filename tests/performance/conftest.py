"""Fixtures for the performance-code tests: a tiny GPT-2 whose greedy choices are well separated.

``initializer_range=0.3`` (instead of GPT-2's 0.02) makes the logits of the random model spread
out, so a greedy choice never hinges on a last-bit rounding difference; the equality tests then
check the decoding logic, not floating-point luck.
"""
from __future__ import annotations

import pytest
import torch

from nebras_bot.generation.settings import GenerationSettings

PROMPTS = [
    "<|system|>\nintent: track_order\nslots: order_id=12345\n<|user|> where is my order 12345?\n<|agent|>",
    "<|user|> hi\n<|agent|>",
    "<|system|>\nintent: cancel_order\ntemplate: I can cancel order {order_id} for you.\n"
    "<|user|> please cancel order 55512, I also want a refund\n<|agent|>",
    "<|system|>\nintent: track_order\nslots: order_id=777\n<|user|> and the other one, 777?\n<|agent|>",
    "hello world " * 15,
]


@pytest.fixture(scope="module")
def tiny():
    from nebras_bot.generation.loader import tiny_gpt2

    torch.set_num_threads(1)
    return tiny_gpt2(seed=2, initializer_range=0.3)


@pytest.fixture
def prompts() -> list:
    return list(PROMPTS)


@pytest.fixture
def settings() -> GenerationSettings:
    return GenerationSettings(max_new_tokens=20, timeout_s=30)
