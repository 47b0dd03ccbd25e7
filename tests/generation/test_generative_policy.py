"""GenerativeResponsePolicy: when it predicts utter_generative, when it abstains, what it persists."""
from __future__ import annotations

import json
import tarfile

import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, ActiveLoop, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from components.generative_policy import METADATA_FILE, GenerativeResponsePolicy

DOMAIN = Domain.from_yaml(
    """
version: "3.1"
intents: [greet, track_order, delivery_options, out_of_scope, nlu_fallback]
responses:
  utter_greet: [{text: "Hello!"}]
  utter_generative: [{text: "Sorry, I can only help with orders."}]
forms:
  order_form: {required_slots: []}
"""
)


@pytest.fixture
def storage(tmp_path):
    return LocalModelStorage(tmp_path)


def make_policy(storage, **config) -> GenerativeResponsePolicy:
    full = {**GenerativeResponsePolicy.get_default_config(), **config}
    context = ExecutionContext(GraphSchema({}), "test")
    return GenerativeResponsePolicy(full, storage, Resource("generative"), context, covered_intents={"greet", "track_order"})


def tracker_after(intent: str, confidence: float = 0.9, *extra) -> DialogueStateTracker:
    return DialogueStateTracker.from_events(
        "s", [ActionExecuted("action_listen"), UserUttered("text", {"name": intent, "confidence": confidence}), *extra]
    )


def predicted(policy, tracker) -> str | None:
    prediction = policy.predict_action_probabilities(tracker, DOMAIN)
    best = max(range(len(prediction.probabilities)), key=prediction.probabilities.__getitem__)
    return DOMAIN.action_names_or_texts[best] if prediction.probabilities[best] > 0 else None


@pytest.mark.parametrize(
    "intent, confidence, expected, reason",
    [
        ("out_of_scope", 0.99, "utter_generative", "trigger_intent: out_of_scope"),
        ("nlu_fallback", 0.99, "utter_generative", "trigger_intent: nlu_fallback"),
        ("greet", 0.1, "utter_generative", "low_nlu_confidence: 0.10"),
        ("delivery_options", 0.9, "utter_generative", "uncovered_intent: delivery_options"),
        ("greet", 0.9, None, None),  # covered and confident: stories and rules answer
        ("track_order", 0.3, None, None),  # exactly at the threshold is not below it
    ],
)
def test_trigger_table(storage, intent, confidence, expected, reason):
    policy = make_policy(storage)
    tracker = tracker_after(intent, confidence)
    assert policy.trigger_reason(tracker) == reason
    assert predicted(policy, tracker) == expected
    if expected:
        prediction = policy.predict_action_probabilities(tracker, DOMAIN)
        assert prediction.policy_priority == 5 and max(prediction.probabilities) == 1.0
        assert prediction.action_metadata == {"reason": reason}


def test_listens_after_its_own_action_and_abstains_elsewhere(storage):
    policy = make_policy(storage)
    after_own = tracker_after("out_of_scope", 0.9, ActionExecuted("utter_generative"))
    assert predicted(policy, after_own) == "action_listen"
    after_other = tracker_after("out_of_scope", 0.9, ActionExecuted("utter_greet"))
    assert predicted(policy, after_other) is None


def test_abstains_inside_a_form(storage):
    tracker = tracker_after("out_of_scope", 0.9)
    tracker.update(ActiveLoop("order_form"))
    tracker.update(ActionExecuted("action_listen"))
    tracker.update(UserUttered("what?", {"name": "out_of_scope", "confidence": 0.9}))
    assert predicted(make_policy(storage), tracker) is None


def test_options_threshold_triggers_priority_and_coverage(storage):
    policy = make_policy(storage, nlu_threshold=0.95, trigger_intents=[], cover_unseen_intents=False, priority=2)
    assert policy.trigger_reason(tracker_after("greet", 0.9)) == "low_nlu_confidence: 0.90"
    assert policy.trigger_reason(tracker_after("out_of_scope", 0.99)) is None
    assert policy.trigger_reason(tracker_after("delivery_options", 0.99)) is None
    assert policy.priority == 2


def test_abstains_when_the_domain_lacks_the_action(storage):
    domain = Domain.from_yaml('version: "3.1"\nintents: [out_of_scope]')
    prediction = make_policy(storage).predict_action_probabilities(tracker_after("out_of_scope"), domain)
    assert max(prediction.probabilities) == 0


def test_persist_and_load_round_trip(storage):
    policy = make_policy(storage)
    policy.persist()
    loaded = GenerativeResponsePolicy.load(
        policy.config, storage, Resource("generative"), ExecutionContext(GraphSchema({}), "test")
    )
    assert loaded.covered_intents == {"greet", "track_order"}
    assert loaded.trigger_reason(tracker_after("delivery_options")) == "uncovered_intent: delivery_options"


def test_missing_persisted_data_turns_coverage_off(storage):
    loaded = GenerativeResponsePolicy.load(
        GenerativeResponsePolicy.get_default_config(), storage, Resource("never-written"),
        ExecutionContext(GraphSchema({}), "test"),
    )
    assert loaded.trigger_reason(tracker_after("delivery_options")) is None  # no data: nothing is "uncovered"
    assert loaded.trigger_reason(tracker_after("out_of_scope")) is not None


def test_rasa_train_persists_the_coverage_in_the_model(mini_bot_model):
    """``rasa train`` on the mini bot (Memoization + Rule + TED + this policy) stores what it learned."""
    with tarfile.open(mini_bot_model) as archive:
        names = [name for name in archive.getnames() if name.endswith(METADATA_FILE)]
        assert len(names) == 1, names
        data = json.load(archive.extractfile(names[0]))
        policies = {name.split("/")[1] for name in archive.getnames() if name.startswith("components/train_")}
    assert {"greet", "track_order", "inform", "out_of_scope"} <= set(data["covered_intents"])
    assert "delivery_options" not in data["covered_intents"]  # no story or rule: answered by generation
    for other in ("MemoizationPolicy", "RulePolicy", "TEDPolicy", "GenerativeResponsePolicy"):
        assert any(other in name for name in policies), (other, policies)


async def test_known_intents_keep_their_rules_and_stories(mini_agent):
    """Rules (greet), the story (order then tracking) and the policy's own turns in one agent."""
    from rasa.core.nlg import TemplatedNaturalLanguageGenerator

    from helpers.mini_bot import use_nlg

    use_nlg(mini_agent, TemplatedNaturalLanguageGenerator(mini_agent.domain.responses))
    sender = "policy-mix"
    assert [m["text"] for m in await mini_agent.handle_text("hello", sender_id=sender)] == ["Hello! How can I help you?"]
    await mini_agent.handle_text("my order is 12345", sender_id=sender)
    await mini_agent.handle_text("thanks", sender_id=sender)
    replies = await mini_agent.handle_text("where is my order", sender_id=sender)
    assert [m["text"] for m in replies] == ["Order 12345 is being prepared."]
    oos = await mini_agent.handle_text("tell me a joke", sender_id=sender)
    assert [m["text"] for m in oos] == ["Sorry, I can only help with orders and invoices."]  # not utter_default
    tracker = await mini_agent.tracker_store.retrieve(sender)
    policies = {e.action_name: e.policy for e in tracker.events if isinstance(e, ActionExecuted) and e.policy}
    assert "RulePolicy" in policies["utter_greet"]
    assert "GenerativeResponsePolicy" in policies["utter_generative"]
