"""Generation settings: one precedence for every field a model may state.

defaults < the model's nebras.json (prompt/generation blocks, exemplars) < NEBRAS_GEN_* < explicit options.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from nebras_bot.generation.generator import ResponseGenerator
from nebras_bot.generation.loader import METADATA_FILE, save_tiny_gpt2
from nebras_bot.generation.settings import GenerationSettings, ModelSettingsError, model_settings

TRAINED = {  # what `nebras train` writes (trainer.py): recipe.prompt.dict(), recipe.generation, exemplars
    "version": "tiny-settings-1",
    "retrieval": True,
    "exemplars": 3,
    "prompt": {"max_history_turns": 4, "max_prompt_tokens": 300, "max_field_chars": 500},
    "generation": {"max_new_tokens": 40, "max_chars": 1600},
}


@pytest.fixture(autouse=True)
def _no_generation_env(monkeypatch):
    for name in ("NEBRAS_GEN_MAX_NEW_TOKENS", "NEBRAS_GEN_MAX_CHARS", "NEBRAS_GEN_MAX_HISTORY_TURNS",
                 "NEBRAS_GEN_EXEMPLARS", "NEBRAS_GEN_TIMEOUT_S"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_gpt2(tmp_path_factory.mktemp("settings") / "tiny-settings-1", "tiny-settings-1")


def _write_metadata(directory: Path, metadata: dict) -> Path:
    (directory / METADATA_FILE).write_text(json.dumps(metadata), encoding="utf-8")
    return directory


# ----------------------------------------------------------------------------- precedence, unit


@pytest.mark.parametrize(
    "env, explicit, expected",
    [
        ({}, {}, 40),  # the model's value beats the default (60)
        ({"NEBRAS_GEN_MAX_NEW_TOKENS": "25"}, {}, 25),  # the environment beats the model
        ({"NEBRAS_GEN_MAX_NEW_TOKENS": "25"}, {"max_new_tokens": 12}, 12),  # explicit beats everything
        ({}, {"max_new_tokens": 12}, 12),
    ],
)
def test_precedence_defaults_model_env_explicit(monkeypatch, env, explicit, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = GenerationSettings.from_options(explicit).with_model_settings(TRAINED, "m/nebras.json")
    assert settings.max_new_tokens == expected
    assert settings.max_chars == 1600  # set by nothing but the model
    assert settings.timeout_s == GenerationSettings.__fields__["timeout_s"].default  # not the model's to set


def test_model_prompt_block_and_exemplars_reach_the_prompt_settings():
    settings = GenerationSettings().with_model_settings(TRAINED, "m/nebras.json")
    prompt = settings.prompt_settings()
    assert (prompt.max_history_turns, prompt.max_prompt_tokens, prompt.max_field_chars, prompt.max_exemplars) == (4, 300, 500, 3)
    assert settings.from_model["max_new_tokens"] == 40


@pytest.mark.parametrize("recipe", ["default", "quick", "default-full-finetune"])
def test_shipped_recipes_decode_their_models_without_repetition_controls(monkeypatch, recipe):
    """The generic defaults keep repetition controls on (any base model), but the models of the
    shipped recipes decode without them: the recipe's generation block goes through nebras.json
    (docs/training.md, "Eighth session"); the environment can still turn them back on."""
    from nebras_bot.training.recipe import load_recipe

    for name in ("NEBRAS_GEN_REPETITION_PENALTY", "NEBRAS_GEN_NO_REPEAT_NGRAM_SIZE"):
        monkeypatch.delenv(name, raising=False)
    metadata = {"version": "v", "generation": load_recipe(recipe).generation}
    generic = GenerationSettings()
    assert generic.repetition_penalty > 1.0 and generic.no_repeat_ngram_size > 0
    trained = generic.with_model_settings(metadata, "m/nebras.json")
    assert (trained.repetition_penalty, trained.no_repeat_ngram_size) == (1.0, 0)
    monkeypatch.setenv("NEBRAS_GEN_REPETITION_PENALTY", "1.15")
    assert GenerationSettings().with_model_settings(metadata, "m/nebras.json").repetition_penalty == 1.15


def test_exemplars_of_a_model_trained_without_retrieval_are_not_taken():
    assert "exemplars" not in model_settings({"retrieval": False, "exemplars": 0})


def test_model_without_blocks_changes_nothing():
    settings = GenerationSettings(max_new_tokens=33)
    assert settings.with_model_settings({"version": "v"}, "m/nebras.json") is settings


@pytest.mark.parametrize(
    "metadata, message",
    [
        ({"generation": {"max_new_tokens": 5000}}, "max_new_tokens"),
        ({"generation": {"max_new_tokens": "many"}}, "max_new_tokens"),
        ({"prompt": {"max_prompt_tokens": 2}}, "max_prompt_tokens"),
        ({"generation": {"timeout_s": 30}}, "unknown 'generation' key(s) 'timeout_s'"),  # serving's choice
        ({"generation": {"max_new_tokns": 30}}, "max_new_tokns"),  # a typo is not ignored
        ({"generation": [1, 2]}, "must be a mapping"),
    ],
)
def test_bad_model_values_are_an_error_naming_the_file(metadata, message):
    with pytest.raises(ModelSettingsError) as error:
        GenerationSettings().with_model_settings(metadata, "models/nlg/v1/nebras.json")
    assert "models/nlg/v1/nebras.json" in str(error.value) and message in str(error.value)


def test_a_bad_model_key_is_an_error_even_when_explicit_options_are_set():
    # the model's block is checked as a whole, whatever the explicit options
    with pytest.raises(ModelSettingsError):
        GenerationSettings(max_new_tokens=20).with_model_settings({"generation": {"nope": 1}}, "m/nebras.json")


# ----------------------------------------------------------------------------- through the loader


def test_loaded_generator_uses_the_model_directory_settings(model_dir, caplog):
    _write_metadata(model_dir, TRAINED)
    with caplog.at_level(logging.INFO, logger="nebras_bot.generation.generator"):
        generator = ResponseGenerator.load(GenerationSettings(model=str(model_dir)))
    try:
        assert generator.available
        assert (generator.settings.max_new_tokens, generator.settings.max_chars) == (40, 1600)
        assert generator.decoder.settings.max_new_tokens == 40  # what decoding really uses
        assert generator.settings.max_history_turns == 4
        assert str(model_dir / METADATA_FILE) in caplog.text
    finally:
        generator.close()


def test_explicit_option_overrides_the_model_directory(model_dir, caplog):
    _write_metadata(model_dir, TRAINED)
    with caplog.at_level(logging.INFO, logger="nebras_bot.generation.generator"):
        generator = ResponseGenerator.load(GenerationSettings.from_options({"model": str(model_dir), "max_new_tokens": 9}))
    try:
        assert generator.settings.max_new_tokens == 9
        assert generator.decoder.settings.max_new_tokens == 9
        assert generator.settings.max_chars == 1600
        assert "overridden by the environment or explicit options: max_new_tokens" in caplog.text
    finally:
        generator.close()


def test_bad_model_settings_leave_the_generator_degraded_with_the_file_named(model_dir):
    _write_metadata(model_dir, {**TRAINED, "generation": {"max_new_tokens": -1}})
    generator = ResponseGenerator.load(GenerationSettings(model=str(model_dir)))
    try:
        assert not generator.available
        assert str(model_dir / METADATA_FILE) in generator.load_error and "max_new_tokens" in generator.load_error
        result = generator.reply(_context(), template="The templated reply.")
        assert (result.text, result.generated, result.reason) == ("The templated reply.", False, "no_model")
    finally:
        generator.close()
        _write_metadata(model_dir, TRAINED)


def _context():
    from nebras_bot.generation.prompt import PromptContext, PromptTurn

    return PromptContext(history=[PromptTurn("user", "hello")], intent="greet")
