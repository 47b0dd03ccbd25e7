"""Fixtures for the reliability tests.

- ``serving_bot_model``: the serving tests' tiny trained Rasa bot (``tests/fixtures/serving_bot``,
  trained once and cached under ``var/test-cache/``);
- ``tiny_model_dir(name, seed)``: a tiny random GPT-2 saved like a registry version (``nebras.json``);
- ``tiny_registry``: a registry directory with two such versions, ``v1`` (current) and ``v2``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from serving.conftest import child_env, free_port, serving_bot_model, stop, wait_http  # noqa: F401 - fixtures

TEMPLATE_GREET = "Hello! I am the Nebras test bot. How can I help?"


def save_tiny_model(directory: Path, version: str, seed: int = 0) -> Path:
    from nebras_bot.generation.loader import save_tiny_gpt2

    return save_tiny_gpt2(directory, version, seed)


@pytest.fixture(scope="session")
def tiny_model_cache(tmp_path_factory) -> Path:
    """One tiny model saved once per session; copied where a test needs a fresh one."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-cache") / "tiny", "tiny-cached", seed=0)


@pytest.fixture
def tiny_model_dir(tiny_model_cache: Path, tmp_path: Path) -> Callable[..., Path]:
    """``make(name_or_absolute_path, version)``: a copy of the tiny model with its own version."""
    import shutil

    def make(name, version: str) -> Path:
        target = Path(name) if Path(name).is_absolute() else tmp_path / name
        shutil.copytree(tiny_model_cache, target)
        (target / "nebras.json").write_text(json.dumps(
            {"version": version, "base_model": "gpt2-scratch:tiny", "retrieval": False}))
        return target

    return make


@pytest.fixture
def tiny_registry(tiny_model_dir, tmp_path: Path) -> Path:
    """``<tmp>/registry`` with versions ``v1`` and ``v2``; ``current`` -> ``v1``."""
    from nebras_bot.training import registry

    root = tmp_path / "registry"
    root.mkdir()
    for version in ("v1", "v2"):
        tiny_model_dir(f"registry/{version}", version)
    registry.promote("v1", root)
    return root
