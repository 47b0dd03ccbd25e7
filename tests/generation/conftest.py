"""Session fixtures for the generation tests: the mini Rasa bot and the tiny response model.

Both are trained ONCE per test session (see ``tests/helpers/mini_bot.py``):

- ``tiny_nlg_dir``: a registry-like layout ``<tmp>/nlg/tiny-test-1`` plus the ``<tmp>/nlg/current``
  link, the tiny GPT-2 trained on the mini bot's replies; yields the ``current`` link.
  ``NEBRAS_TEST_TINY_NLG=/dir`` reuses a directory trained before.
- ``tiny_loaded``: that model loaded once (shared by every generator built in the tests).
- ``mini_bot_model``: ``tests/fixtures/mini_bot`` trained with ``rasa train`` in-process.
  ``NEBRAS_TEST_MINI_BOT=/path/mini.tar.gz`` reuses an archive trained before.
- ``mini_agent``: a Rasa agent for the mini bot, loaded once; tests install their own NLG with
  ``helpers.mini_bot.use_nlg`` and talk under their own sender ids.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from helpers.mini_bot import TINY_NLG_VERSION, train_mini_bot, train_tiny_nlg

ENV_TINY_NLG = "NEBRAS_TEST_TINY_NLG"
ENV_MINI_BOT = "NEBRAS_TEST_MINI_BOT"


@pytest.fixture(scope="session")
def tiny_nlg_dir(tmp_path_factory) -> Path:
    reuse = os.environ.get(ENV_TINY_NLG, "").strip()
    if reuse:
        path = Path(reuse)
        if not (path / "config.json").is_file():
            pytest.fail(f"{ENV_TINY_NLG}={reuse} is not a trained model directory")
        return path
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("registry") / "nlg"
    train_tiny_nlg(root / TINY_NLG_VERSION)
    current = root / "current"
    os.symlink(TINY_NLG_VERSION, current)
    return current


@pytest.fixture(scope="session")
def tiny_loaded(tiny_nlg_dir: Path) -> Any:
    from nebras_bot.generation.loader import load_causal_lm

    return load_causal_lm(tiny_nlg_dir)


@pytest.fixture(scope="session")
def mini_bot_model(tmp_path_factory) -> Path:
    reuse = os.environ.get(ENV_MINI_BOT, "").strip()
    if reuse:
        path = Path(reuse)
        if not path.is_file():
            pytest.fail(f"{ENV_MINI_BOT}={reuse} is not a model archive")
        return path
    return train_mini_bot(tmp_path_factory.mktemp("mini_bot"))


@pytest.fixture(scope="session")
def mini_agent(mini_bot_model: Path) -> Iterator[Any]:
    from rasa.core.agent import Agent

    agent = Agent.load(str(mini_bot_model))
    yield agent

