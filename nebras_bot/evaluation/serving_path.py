"""The serving code the evaluation runs, so evaluated replies are the replies the bot sends.

- Templates: the domain's ``utter_<intent>`` variant that Rasa would send, rendered with
  ``nebras_bot.data.templates.render_template`` (the same function that builds the training
  prompts' ``template:`` field).
- What the NLG class hands the generator: in ``rephrase`` mode the template goes into the prompt;
  in ``generate`` mode (and for messages without an ``utter_<intent>`` response, which serving
  answers with the generative policy's ``utter_generative``) the prompt has no template and the
  fallback reply is ``utter_generative``'s text (:func:`reply_inputs`).
- Replies: engineer B's ``ResponseGenerator`` (prompt builder, exemplar retrieval from the model's
  ``exemplars/`` index, decoding, placeholder filling, guard, templated fallback).
- Perplexity prompts: ``ResponseGenerator.build_prompt`` (the exact prompt generation used).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from nebras_bot.generation.prompt import PromptContext

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINTS: Any = object()  # build_generator: the project's endpoints.yml
GENERATIVE_RESPONSE = "utter_generative"  # the generative response policy's action (components/)


class ModelUnavailableError(RuntimeError):
    """The model to evaluate could not be loaded."""


def build_generator(model: Path | str, timeout_s: Optional[float] = None, endpoints: Path | str | None = DEFAULT_ENDPOINTS):
    """A ``ResponseGenerator`` for ``model`` with serving's settings, in serving's precedence:
    defaults < the model's ``nebras.json`` < ``NEBRAS_GEN_*`` < the ``nlg:`` keys of ``endpoints``
    (the project's ``endpoints.yml`` by default; its ``model`` key is ignored: ``model`` is scored).

    ``timeout_s`` overrides the per-reply time limit. Raises :class:`ModelUnavailableError` when the
    model cannot be loaded (or its nebras.json settings are unusable): evaluating the templated
    fallback as if it were the model would be misleading.
    """
    from nebras_bot import paths
    from nebras_bot.generation.generator import ResponseGenerator
    from nebras_bot.generation.settings import OPTION_ALIASES, GenerationSettings
    from nebras_bot.nlg import endpoint_generation_options

    if endpoints is DEFAULT_ENDPOINTS:
        endpoints = paths.home() / "endpoints.yml"
    options = {k: v for k, v in endpoint_generation_options(endpoints).items()
               if OPTION_ALIASES.get(k, k) != "model"}
    settings = GenerationSettings.from_options(options)
    if timeout_s is not None:
        settings = settings.copy(update={"timeout_s": float(timeout_s)})
    generator = ResponseGenerator.load(settings, source=str(model))
    if not generator.available:
        raise ModelUnavailableError(f"could not load the response model {model}: {generator.load_error}")
    return generator


def loaded_model(generator: Any, model: Path | str) -> Any:
    """The ``LoadedModel`` behind ``generator`` (None when it has none)."""
    return getattr(generator, "loaded", None)


def prompt_for(generator: Any, context: PromptContext, loaded: Any) -> str:
    """The prompt the generator builds for ``context`` (with retrieval and its token counter)."""
    if hasattr(generator, "build_prompt"):
        return generator.build_prompt(context)
    from nebras_bot.generation.prompt import build_prompt

    return build_prompt(context, count_tokens=lambda text: len(loaded.tokenizer(text)["input_ids"]))


Variants = Dict[str, List[Dict[str, Any]]]


def domain_templates(domain: Optional[Path]) -> Variants:
    """``{intent: response variants}`` of the domain (``utter_<intent>``), via Rasa's domain loader."""
    from nebras_bot.data.templates import intent_templates

    return intent_templates(domain)


def project_templates(domain: Path | str | None = None, settings: Any = None) -> Any:
    """The templates Rasa would send (an ``IntentTemplateBaseline``): from ``domain``, or the project's
    domain (``settings.domain`` and ``settings.domain_dir`` under ``NEBRAS_HOME``)."""
    from nebras_bot import paths
    from nebras_bot.evaluation.baselines import IntentTemplateBaseline
    from nebras_bot.evaluation.settings import EvaluationSettings

    settings = settings or EvaluationSettings()
    domains = [Path(domain)] if domain else [paths.home() / settings.domain, paths.home() / settings.domain_dir]
    return IntentTemplateBaseline.from_domain(*domains)


def render(variants: Variants, intent: Optional[str], values: Mapping[str, str]) -> Optional[str]:
    """The reply Rasa's templated NLG would send for ``intent`` given slot ``values``."""
    from nebras_bot.data.templates import render_template

    if not intent or intent not in variants:
        return None
    return render_template(variants[intent], values)


def generation_mode(generator: Any) -> str:
    """The generator's ``mode`` setting (serving's ``NEBRAS_GEN_MODE``; ``rephrase`` by default)."""
    from nebras_bot.generation.settings import GenerationSettings

    settings = getattr(generator, "settings", None)
    return getattr(settings, "mode", None) or GenerationSettings().mode


def reply_inputs(template: Optional[str], generative: Optional[str], mode: str) -> Tuple[Optional[str], Optional[str]]:
    """``(template shown in the prompt, reply sent when generation fails)`` as serving's NLG uses them.

    A message with an ``utter_<intent>`` response: the template is the fallback, and is in the prompt
    unless ``mode`` is ``generate``. Without one, serving's policy predicts ``utter_generative``:
    generate mode (no template in the prompt), its text as the fallback.
    """
    from nebras_bot.generation.settings import MODE_GENERATE

    if template is None:
        return None, generative
    return (None if mode == MODE_GENERATE else template), template
