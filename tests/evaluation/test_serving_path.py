"""nebras evaluate builds its generator with serving's settings precedence, endpoints.yml included."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from nebras_bot.evaluation.serving_path import build_generator
from nebras_bot.generation.loader import METADATA_FILE, save_tiny_gpt2

ENDPOINTS = """
nlg:
  type: nebras_bot.nlg.GPT2NaturalLanguageGenerator
  model: models/nlg/somewhere-else
  timeout: 7.0
  max_new_tokens: 9
  generate_actions: [utter_generative]
"""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    directory = save_tiny_gpt2(tmp_path_factory.mktemp("serving_path") / "tiny-eval-1", "tiny-eval-1")
    metadata = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
    metadata["generation"] = {"max_new_tokens": 40, "max_chars": 1600}
    (directory / METADATA_FILE).write_text(json.dumps(metadata), encoding="utf-8")
    return directory


@pytest.fixture(autouse=True)
def _no_generation_env(monkeypatch):
    for name in ("NEBRAS_GEN_MAX_NEW_TOKENS", "NEBRAS_GEN_MAX_CHARS", "NEBRAS_GEN_TIMEOUT_S", "NEBRAS_GEN_MODEL"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    "endpoints_text, timeout, expected",
    [
        (ENDPOINTS, None, (9, 7.0)),  # endpoints.yml wins over the model, as in serving
        (ENDPOINTS, 60.0, (9, 60.0)),  # --timeout wins over endpoints.yml
        (None, None, (40, 3.0)),  # no endpoints.yml: the model's value, the default timeout
        ("nlg:\n  type: callback\n  url: http://x\n", None, (40, 3.0)),  # another NLG: not ours to read
    ],
)
def test_build_generator_follows_serving_precedence(tmp_path, model_dir, endpoints_text, timeout, expected):
    endpoints = tmp_path / "endpoints.yml"
    if endpoints_text is not None:
        endpoints.write_text(endpoints_text, encoding="utf-8")
    generator = build_generator(model_dir, timeout_s=timeout, endpoints=endpoints)
    try:
        assert generator.model_version == "tiny-eval-1"  # endpoints' model key does not replace --model
        assert (generator.settings.max_new_tokens, generator.settings.timeout_s) == expected
        assert generator.settings.max_chars == 1600
    finally:
        generator.close()
