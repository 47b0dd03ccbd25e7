"""``GenerativeResponsePolicy``: answer with a generated reply where the stories and rules have none.

Right after a user message (and outside an active form), the policy predicts the generated-reply
action (``utter_generative``) with confidence 1.0 when

- the intent is one of ``trigger_intents`` (``out_of_scope``, ``nlu_fallback``), or
- the NLU confidence of the intent is below ``nlu_threshold``, or
- no rule or story in the training data covers the message's intent (``cover_unseen_intents``).

Right after its own action it predicts ``action_listen``. Everywhere else it abstains (all zeros),
so known intents keep following their stories and rules.

With ``priority`` above RulePolicy's (4) its prediction wins ties at confidence 1.0; the response
generator (``nebras_bot.nlg.GPT2NaturalLanguageGenerator``) writes the reply, and the response's
own text is the safe fallback. What the policy learned at ``rasa train`` time (the covered intents)
is persisted in the Rasa model.

Configure in ``config.yml``::

    policies:
      - name: components.generative_policy.GenerativeResponsePolicy
        nlu_threshold: 0.3
        priority: 5
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Text

from rasa.core.policies.policy import Policy, PolicyPrediction, SupportedData
from rasa.engine.graph import ExecutionContext
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.constants import DEFAULT_NLU_FALLBACK_INTENT_NAME
from rasa.shared.core.constants import ACTION_LISTEN_NAME, USER_INTENT_OUT_OF_SCOPE
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import UserUttered
from rasa.shared.core.generator import TrackerWithCachedStates
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.exceptions import FileIOException

logger = logging.getLogger(__name__)

# Config keys (defaults in get_default_config).
ACTION_NAME = "action_name"
NLU_THRESHOLD = "nlu_threshold"
TRIGGER_INTENTS = "trigger_intents"
COVER_UNSEEN_INTENTS = "cover_unseen_intents"
PRIORITY = "priority"

DEFAULT_ACTION = "utter_generative"
DEFAULT_NLU_THRESHOLD = 0.3
DEFAULT_PRIORITY = 5  # RulePolicy is 4, MemoizationPolicy 3, TEDPolicy 1
METADATA_FILE = "generative_policy.json"

REASON_TRIGGER = "trigger_intent"
REASON_LOW_CONFIDENCE = "low_nlu_confidence"
REASON_UNCOVERED = "uncovered_intent"


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.POLICY_WITHOUT_END_TO_END_SUPPORT, is_trainable=True)
class GenerativeResponsePolicy(Policy):
    """Predicts the generated-reply action for messages the dialogue data does not cover."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {
            ACTION_NAME: DEFAULT_ACTION,
            NLU_THRESHOLD: DEFAULT_NLU_THRESHOLD,
            TRIGGER_INTENTS: [USER_INTENT_OUT_OF_SCOPE, DEFAULT_NLU_FALLBACK_INTENT_NAME],
            COVER_UNSEEN_INTENTS: True,
            PRIORITY: DEFAULT_PRIORITY,
        }

    @staticmethod
    def supported_data() -> SupportedData:
        return SupportedData.ML_AND_RULE_DATA  # coverage comes from stories and rules alike

    def __init__(
        self,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        featurizer: Optional[Any] = None,
        covered_intents: Optional[Set[Text]] = None,
    ) -> None:
        super().__init__(config, model_storage, resource, execution_context, featurizer)
        self.covered_intents: Set[Text] = set(covered_intents or ())

    def _create_featurizer(self) -> None:  # type: ignore[override]
        return None  # the policy reads the tracker directly; it featurizes nothing

    # ------------------------------------------------------------------ training

    def train(
        self,
        training_trackers: List[TrackerWithCachedStates],
        domain: Domain,
        **kwargs: Any,
    ) -> Resource:
        """Remembers which intents some story or rule answers; persists that in the model."""
        covered: Set[Text] = set()
        for tracker in training_trackers:
            for event in tracker.events:
                if isinstance(event, UserUttered) and event.intent_name:
                    covered.add(event.intent_name)
        self.covered_intents = covered
        if self.config[ACTION_NAME] not in domain.action_names_or_texts:
            logger.warning(
                "%s: the domain has no %r; the policy will never predict it.",
                self.__class__.__name__, self.config[ACTION_NAME],
            )
        logger.debug("%s covers %d intents", self.__class__.__name__, len(covered))
        self.persist()
        return self._resource

    def persist(self) -> None:
        with self._model_storage.write_to(self._resource) as path:
            data = {"covered_intents": sorted(self.covered_intents)}
            (Path(path) / METADATA_FILE).write_text(json.dumps(data, indent=2), encoding="utf-8")

    @classmethod
    def load(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> "GenerativeResponsePolicy":
        covered: Set[Text] = set()
        try:
            with model_storage.read_from(resource) as path:
                data = json.loads((Path(path) / METADATA_FILE).read_text(encoding="utf-8"))
                covered = set(data.get("covered_intents", []))
        except (ValueError, FileNotFoundError, FileIOException, OSError) as error:
            logger.warning(
                "%s: no persisted coverage (%s); treating every intent as covered.", cls.__name__, error
            )
            config = {**config, COVER_UNSEEN_INTENTS: False}
        return cls(config, model_storage, resource, execution_context, covered_intents=covered)

    # ------------------------------------------------------------------ prediction

    def trigger_reason(self, tracker: DialogueStateTracker) -> Optional[Text]:
        """Why the latest user message should get a generated reply (None: leave it to the others)."""
        intent = tracker.latest_message.intent if tracker.latest_message else {}
        name = (intent or {}).get("name")
        if not name:
            return None
        if name in self.config[TRIGGER_INTENTS]:
            return f"{REASON_TRIGGER}: {name}"
        confidence = (intent or {}).get("confidence")
        if confidence is not None and float(confidence) < float(self.config[NLU_THRESHOLD]):
            return f"{REASON_LOW_CONFIDENCE}: {float(confidence):.2f}"
        if self.config[COVER_UNSEEN_INTENTS] and self.covered_intents and name not in self.covered_intents:
            return f"{REASON_UNCOVERED}: {name}"
        return None

    def predict_action_probabilities(
        self,
        tracker: DialogueStateTracker,
        domain: Domain,
        rule_only_data: Optional[Dict[Text, Any]] = None,
        **kwargs: Any,
    ) -> PolicyPrediction:
        probabilities = self._default_predictions(domain)
        action = self.config[ACTION_NAME]
        if action not in domain.action_names_or_texts or tracker.active_loop_name:
            return self._prediction(probabilities)
        latest = tracker.latest_action_name
        if latest == action:
            probabilities[domain.index_for_action(ACTION_LISTEN_NAME)] = 1.0
            return self._prediction(probabilities)
        if latest != ACTION_LISTEN_NAME:
            return self._prediction(probabilities)
        reason = self.trigger_reason(tracker)
        if reason is None:
            return self._prediction(probabilities)
        logger.debug("%s predicts %s (%s)", self.__class__.__name__, action, reason)
        probabilities[domain.index_for_action(action)] = 1.0
        return self._prediction(probabilities, diagnostic_data={"reason": reason}, action_metadata={"reason": reason})
