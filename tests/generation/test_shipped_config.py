"""The shipped endpoints.yml and config.yml wire the generator and the generative policy."""
from __future__ import annotations

import logging
import os
import shutil

import pytest
from rasa.core.nlg import NaturalLanguageGenerator
from rasa.core.utils import AvailableEndpoints
from rasa.shared.core.domain import Domain
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.utils.io import read_yaml_file

from nebras_bot.generation.settings import GenerationSettings
from nebras_bot.nlg import GENERATED, GPT2NaturalLanguageGenerator

DOMAIN = Domain.from_yaml(
    """
version: "3.1"
responses:
  utter_greet: [{text: "Hello from the template."}]
"""
)


@pytest.fixture
def shipped_endpoints(repo_root, tmp_path, monkeypatch):
    """The shipped endpoints.yml, read from a working directory without models/ (a fresh checkout)."""
    shutil.copy(repo_root / "endpoints.yml", tmp_path / "endpoints.yml")
    monkeypatch.chdir(tmp_path)
    return AvailableEndpoints.read_endpoints("endpoints.yml")


def test_endpoints_configure_the_gpt2_nlg_with_valid_options(shipped_endpoints):
    nlg = shipped_endpoints.nlg
    assert nlg.type == "nebras_bot.nlg.GPT2NaturalLanguageGenerator"
    options = {k: v for k, v in nlg.kwargs.items() if k not in ("generate_actions", "channels")}
    settings = GenerationSettings.from_options(options)  # unknown keys would raise
    assert settings.model == "models/nlg/current"
    assert settings.timeout_s == 3.0 and settings.mode == "rephrase"
    assert {"model", "mode", "rephrase_all", "history_turns", "timeout", "max_new_tokens"} <= set(nlg.kwargs)


async def test_without_a_trained_model_the_assistant_starts_and_sends_templates(shipped_endpoints, caplog):
    with caplog.at_level(logging.ERROR):
        nlg = NaturalLanguageGenerator.create(shipped_endpoints.nlg, None)  # what rasa run/shell do
    assert isinstance(nlg, GPT2NaturalLanguageGenerator) and not nlg.generator.available
    assert "models/nlg/current" in caplog.text and "templated replies only" in caplog.text
    tracker = DialogueStateTracker("s", [])
    reply = await nlg.generate("utter_greet", tracker, "cmdline", domain_responses=DOMAIN.responses)
    assert reply["text"] == "Hello from the template." and reply[GENERATED] is False


async def test_with_models_nlg_current_the_shipped_config_generates(shipped_endpoints, tiny_nlg_dir, tmp_path):
    (tmp_path / "models" / "nlg").mkdir(parents=True)
    os.symlink(os.path.realpath(tiny_nlg_dir), tmp_path / "models" / "nlg" / "current")
    nlg = NaturalLanguageGenerator.create(shipped_endpoints.nlg, None)
    try:
        assert nlg.generator.available and nlg.generator.model_version == "tiny-test-1"
        assert nlg.settings.rephrase_all is True
    finally:
        nlg.generator.close()


def test_config_adds_the_generative_policy_after_the_stock_policies(repo_root):
    config = read_yaml_file(repo_root / "config.yml")
    names = [policy["name"] for policy in config["policies"]]
    assert {"MemoizationPolicy", "RulePolicy", "TEDPolicy"} <= set(names)
    (policy,) = [p for p in config["policies"] if p["name"] == "components.generative_policy.GenerativeResponsePolicy"]
    assert policy["priority"] > 4  # above RulePolicy: replaces the canned fallback replies
    assert "utter_generative" in Domain.load(str(repo_root / "domain.yml")).responses


def test_config_builds_a_rasa_training_graph_with_the_policy(repo_root):
    from rasa.engine.recipes.recipe import Recipe
    from rasa.shared.data import TrainingType

    config = read_yaml_file(repo_root / "config.yml")
    recipe = Recipe.recipe_for_name(config.get("recipe"))
    graph = recipe.graph_config_for_recipe(config, {}, training_type=TrainingType.BOTH)
    nodes = [name for name in graph.train_schema.nodes if "GenerativeResponsePolicy" in name]
    assert nodes, list(graph.train_schema.nodes)
    node = graph.train_schema.nodes[nodes[0]]
    assert node.config["priority"] == 5 and node.config["nlu_threshold"] == 0.3
