"""Fixtures for the training tests: a tiny prepared dataset (hand-written fixture rows) and recipe."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A prepared dataset directory from the small fixture CSV and the fixture Rasa project."""
    import torch

    torch.set_num_threads(1)
    from nebras_bot.data.prepare import prepare
    from nebras_bot.data.settings import DataSettings

    root = tmp_path_factory.mktemp("tiny-data")
    bitext = root / "bitext"
    bitext.mkdir()
    (bitext / "responses.csv").write_text((FIXTURES / "bitext_small.csv").read_text())
    dataset = prepare(
        bitext, root / "datasets", DataSettings(validation_fraction=0.2, test_fraction=0.1),
        domain=FIXTURES / "rasa" / "domain.yml", stories=[FIXTURES / "rasa" / "data"],
    )
    return dataset.directory


@pytest.fixture()
def tiny_recipe():
    from nebras_bot.training.recipe import Recipe

    return Recipe(
        name="tiny-test",
        base="gpt2-scratch:tiny",
        model_config_overrides={"n_positions": 512},
        retrieval=True,
        max_length=384,
        batch_size=2,
        lr=3e-3,
        warmup_steps=2,
        max_steps=6,
        eval_every=3,
        eval_batches=2,
        checkpoint_every=3,
        log_every=1,
        early_stopping_patience=0,
        threads=1,
        seed=5,
    )
