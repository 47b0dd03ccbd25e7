"""``GPT2NaturalLanguageGenerator``: Rasa's templated NLG, with replies rewritten by the language model.

Configured in ``endpoints.yml``::

    nlg:
      type: nebras_bot.nlg.GPT2NaturalLanguageGenerator
      model: models/nlg/current     # any nebras_bot.generation.loader source
      mode: rephrase                # rephrase | generate
      rephrase_all: false           # true: every text response, unless metadata rephrase: false
      history_turns: 6
      timeout: 3.0                  # seconds per reply
      max_new_tokens: 220           # cut earlier by the timeout's deadline, at a sentence end

For each response Rasa asks for, the templated reply is built first by Rasa's own
``TemplatedNaturalLanguageGenerator`` (slot filling, conditional variations, channel variations,
buttons, images, custom payloads). The language model then rewrites its text when the response
opts in (``metadata: {rephrase: true}``, or ``rephrase_all`` without ``rephrase: false``) or is a
generated-reply action (``utter_generative``). Any failure (no model, exception, timeout, guard
rejection, unfilled placeholder) sends the templated reply, so a reply is never None or empty for
a response the domain defines.

The returned message carries ``generated`` (bool), ``model_version`` and, for a fallback,
``generation_fallback`` (the reason); Rasa keeps them as the ``BotUttered`` metadata.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Dict, Optional, Text

from rasa.core.nlg.response import TemplatedNaturalLanguageGenerator
from rasa.shared.core.domain import Domain
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.endpoints import EndpointConfig

from nebras_bot.generation.context import context_from_tracker
from nebras_bot.generation.generator import LAST_RESORT_TEXT, GenerationResult, ResponseGenerator
from nebras_bot.generation.hotswap import ReloadingGenerator
from nebras_bot.generation.settings import MODE_GENERATE, GenerationSettings
from nebras_bot.monitoring import metrics

logger = logging.getLogger(__name__)

# NLG-only options (everything else in the nlg: section goes to GenerationSettings).
GENERATE_ACTIONS = "generate_actions"
CHANNELS = "channels"
DEFAULT_GENERATE_ACTIONS = ("utter_generative",)
RESPONSE_METADATA = "metadata"
REPHRASE_KEY = "rephrase"
IGNORED_OPTIONS = ("url", "type", "token", "token_name")  # EndpointConfig fields Rasa may copy into kwargs

GENERATED = "generated"
MODEL_VERSION = "model_version"
FALLBACK_REASON = "generation_fallback"


def generation_options(options: Dict[str, Any]) -> Dict[str, Any]:
    """The ``GenerationSettings`` options among an ``nlg:`` section's keys (NLG-only and Rasa's own
    endpoint keys removed)."""
    return {k: v for k, v in options.items() if k not in (*IGNORED_OPTIONS, GENERATE_ACTIONS, CHANNELS)}


def endpoint_generation_options(endpoints: Any) -> Dict[str, Any]:
    """The generation options of ``endpoints.yml``'s ``nlg:`` section, read as Rasa reads it
    (``${VAR}`` expanded); empty when the file is missing or its NLG is not this class."""
    from rasa.utils.endpoints import read_endpoint_config

    if not endpoints or not Path(endpoints).is_file():
        return {}
    config = read_endpoint_config(str(endpoints), "nlg")
    if config is None or config.type != f"{__name__}.{GPT2NaturalLanguageGenerator.__name__}":
        return {}
    return generation_options(dict(config.kwargs))


class GPT2NaturalLanguageGenerator(TemplatedNaturalLanguageGenerator):
    """Templated responses rewritten in context by a GPT-2-family model, with a templated fallback."""

    def __init__(
        self,
        endpoint_config: Optional[EndpointConfig] = None,
        domain: Optional[Domain] = None,
        generator: Optional[ResponseGenerator] = None,
        **kwargs: Any,
    ) -> None:
        # Rasa builds the NLG before the model is loaded, so ``domain`` is usually empty here;
        # Agent.load_model sets ``self.responses`` and every call passes ``domain_responses``.
        super().__init__(domain.responses if domain else {})
        options: Dict[str, Any] = dict(endpoint_config.kwargs) if endpoint_config else {}
        options.update(kwargs)
        self.generate_actions = set(options.get(GENERATE_ACTIONS, DEFAULT_GENERATE_ACTIONS) or ())
        channels = options.get(CHANNELS)
        self.channels = set(channels) if channels else None
        # explicit options: they win over NEBRAS_GEN_* and the model's nebras.json (settings.py)
        self.settings = GenerationSettings.from_options(generation_options(options))
        # follows models/nlg/current: promotion/rollback and a model that appears later are picked up
        self.generator = generator if generator is not None else ReloadingGenerator.load(self.settings)
        if not self.generator.available:
            logger.error(
                "GPT2NaturalLanguageGenerator: no response model (%s); the assistant serves templated "
                "replies only. Train one with `nebras train` or set nlg.model in endpoints.yml.",
                self.generator.load_error,
            )

    # ------------------------------------------------------------------ decisions

    def wants_generation(self, utter_action: Text, response: Dict[Text, Any], output_channel: Text) -> bool:
        """Whether the model should (re)write this response's text."""
        if not response.get("text"):
            return False  # image/custom-only responses are sent as they are
        if self.channels is not None and output_channel not in self.channels:
            return False
        if utter_action in self.generate_actions:
            return True
        metadata = response.get(RESPONSE_METADATA) or {}
        flag = metadata.get(REPHRASE_KEY) if isinstance(metadata, dict) else None
        if flag is not None:
            return bool(flag)
        return self.settings.rephrase_all

    def _mode_for(self, utter_action: Text) -> str:
        return MODE_GENERATE if utter_action in self.generate_actions else self.settings.mode

    # ------------------------------------------------------------------ Rasa entry point

    async def generate(
        self,
        utter_action: Text,
        tracker: DialogueStateTracker,
        output_channel: Text,
        **kwargs: Any,
    ) -> Optional[Dict[Text, Any]]:
        domain_responses = kwargs.pop("domain_responses", None)
        if domain_responses:
            self.responses = domain_responses
        filled_slots = tracker.current_slot_values()
        response = self.generate_from_slots(utter_action, filled_slots, output_channel, **kwargs)
        if response is None:
            return None  # the domain has no such response: Rasa's own contract (logged by Rasa)
        if not response.get("text") and not any(response.get(k) for k in ("image", "custom", "buttons", "attachment")):
            response["text"] = LAST_RESORT_TEXT  # an empty templated reply is never sent
        if not self.wants_generation(utter_action, response, output_channel):
            return self._mark(response, None)
        try:
            result = await self._generate_text(utter_action, tracker, response, output_channel, kwargs)
        except Exception as error:  # noqa: BLE001 - the templated reply always goes out
            logger.exception("generation for %s failed; sending the templated reply", utter_action)
            metrics.ERRORS.labels(component="nlg").inc()
            metrics.FALLBACKS.labels(reason="error").inc()
            result = GenerationResult(
                text=response["text"], generated=False, reason=f"error: {type(error).__name__}",
                model_version=self.generator.model_version,
            )
        response["text"] = result.text or response["text"]
        logger.debug(
            "%s on %s: generated=%s reason=%s %.0f ms",
            utter_action, output_channel, result.generated, result.reason, result.latency_ms,
        )
        return self._mark(response, result)

    async def _generate_text(
        self,
        utter_action: Text,
        tracker: DialogueStateTracker,
        response: Dict[Text, Any],
        output_channel: Text,
        kwargs: Dict[Text, Any],
    ) -> GenerationResult:
        template = response["text"]
        prompt_template = template if self._mode_for(utter_action) != MODE_GENERATE else None
        context = context_from_tracker(tracker, template=prompt_template, channel=output_channel)
        values = {k: v for k, v in kwargs.items() if isinstance(v, (str, int, float))}
        return await self.generator.areply(context, template, values, timeout=self.settings.timeout_s)

    def _mark(self, response: Dict[Text, Any], result: Optional[GenerationResult]) -> Dict[Text, Any]:
        response = copy.copy(response)
        response[GENERATED] = bool(result and result.generated)
        # the version of the model that served this reply (the model in use may be swapped meanwhile)
        response[MODEL_VERSION] = (result.model_version if result is not None and result.model_version
                                   else self.generator.model_version)
        if result is not None and result.reason:
            response[FALLBACK_REASON] = result.reason
        return response
