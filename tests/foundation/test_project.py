"""Static checks of the Rasa project files: fast, no training.

They pin the contract names (CONTRACTS.md), the hand-written data requirements (>= 12 examples
per intent) and the coverage of rules/stories/test stories, so that a later edit that breaks one
of them fails here in a second rather than in a training run.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from nebras_bot.entities import ENTITIES, TICKET_ID

REPO_ROOT = Path(__file__).resolve().parents[2]

BITEXT_INTENTS = {
    "cancel_order", "change_order", "change_shipping_address", "check_cancellation_fee",
    "check_invoice", "check_payment_methods", "check_refund_policy", "complaint",
    "contact_customer_service", "contact_human_agent", "create_account", "delete_account",
    "delivery_options", "delivery_period", "edit_account", "get_invoice", "get_refund",
    "newsletter_subscription", "payment_issue", "place_order", "recover_password",
    "registration_problems", "review", "set_up_shipping_address", "switch_account",
    "track_order", "track_refund",
}
OTHER_INTENTS = {
    "greet", "goodbye", "affirm", "deny", "thank_you", "bot_challenge", "out_of_scope", "inform",
    "open_ticket", "ticket_status", "give_feedback",
}
ALL_INTENTS = BITEXT_INTENTS | OTHER_INTENTS
CONTRACT_ACTIONS = {
    "action_order_status", "action_cancel_order", "action_refund_status", "action_create_ticket",
    "action_ticket_status", "action_handoff", "action_feedback", "validate_order_form",
    "validate_ticket_form", "utter_generative",
}
MIN_EXAMPLES_PER_INTENT = 12


def load(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def domain():
    from rasa.shared.core.domain import Domain

    return Domain.load(str(REPO_ROOT / "domain.yml"))


@pytest.fixture(scope="module")
def nlu_examples():
    """intent -> hand-written example texts (annotations stripped), from data/nlu/*.yml."""
    examples = {}
    for path in sorted((REPO_ROOT / "data" / "nlu").glob("*.yml")):
        for block in load(path).get("nlu", []):
            if "intent" in block:
                lines = [line[2:].strip() for line in block["examples"].splitlines() if line.startswith("- ")]
                examples.setdefault(block["intent"], []).extend(lines)
    return examples


def steps_of(folder: Path, key: str):
    for path in sorted(folder.glob("*.yml")):
        for item in load(path).get(key, []) or []:
            yield item.get("condition", []) + item["steps"]


def test_domain_has_every_contract_name(domain):
    assert ALL_INTENTS <= set(domain.intent_properties)
    assert set(ENTITIES) | {TICKET_ID, "rating"} <= set(domain.entities)
    assert set(ENTITIES) | {TICKET_ID, "rating", "ticket_description"} <= {s.name for s in domain.slots}
    assert {"order_form", "ticket_form"} <= set(domain.form_names)
    assert CONTRACT_ACTIONS <= set(domain.user_actions)
    for response in ("utter_ask_order_id", "utter_ask_email", "utter_ask_ticket_description",
                     "utter_default", "utter_generative"):
        assert response in domain.responses, response
    assert domain.responses["utter_generative"][0].get("metadata", {}).get("rephrase") is True


def test_small_talk_and_form_questions_are_sent_word_for_word_support_answers_are_rephrased(domain):
    def opted_out(name):
        return all(v.get("metadata", {}).get("rephrase") is False for v in domain.responses[name])

    for name in ("utter_greet", "utter_goodbye", "utter_thank_you", "utter_bot_challenge",
                 "utter_ask_order_id", "utter_ask_email", "utter_ask_ticket_description", "utter_order_request_noted"):
        assert opted_out(name), name
    support = [name for name in domain.responses
               if name.startswith("utter_") and not opted_out(name) and name != "utter_generative"]
    assert len(support) >= 20  # the support answers (Bitext topics without a custom action) are still rewritten


def test_forms_require_the_contract_slots(domain):
    assert domain.required_slots_for_form("order_form") == ["order_id"]
    assert domain.required_slots_for_form("ticket_form") == ["email", "ticket_description"]
    # order_id is remembered across turns: a global from_entity mapping, not tied to a form.
    mapping = next(s for s in domain.slots if s.name == "order_id").mappings
    assert mapping == [{"type": "from_entity", "entity": "order_id"}]


def test_order_request_slot_routes_each_order_intent_to_its_action(domain):
    """order_request is set from the order intent; after order_form a rule runs the matching action."""
    slot = next(s for s in domain.slots if s.name == "order_request")
    assert slot.influence_conversation
    by_intent = {m["intent"]: m["value"] for m in slot.mappings if m["type"] == "from_intent"}
    assert by_intent == {"track_order": "status", "cancel_order": "cancel", "track_refund": "refund"}
    expected = {"status": "action_order_status", "cancel": "action_cancel_order", "refund": "action_refund_status"}
    routed = {}
    for rule in load(REPO_ROOT / "data" / "rules" / "orders.yml")["rules"]:
        condition = rule.get("condition") or []
        requests = [c["slot_was_set"][0]["order_request"] for c in condition if "slot_was_set" in c]
        actions = [step["action"] for step in rule["steps"] if "action" in step]
        if requests and actions[:1] == ["order_form"]:
            routed[requests[0]] = actions[-1]
    assert routed == expected


def test_every_intent_has_enough_varied_hand_written_examples(nlu_examples):
    assert set(nlu_examples) == ALL_INTENTS
    for intent, texts in nlu_examples.items():
        assert len(texts) >= MIN_EXAMPLES_PER_INTENT, intent
        assert len(set(t.lower() for t in texts)) == len(texts), f"duplicate examples in {intent}"
    every = Counter(t.lower() for texts in nlu_examples.values() for t in texts)
    assert not [t for t, n in every.items() if n > 1], "an example is labelled with two intents"


def test_every_intent_has_a_fixed_reply_or_an_action(domain):
    handled = set()
    for folder, key in ((REPO_ROOT / "data" / "rules", "rules"), (REPO_ROOT / "data" / "stories", "stories")):
        for steps in steps_of(folder, key):
            # slot_was_set events from intent-mapped slots (order_request) sit between the
            # intent and the action that answers it.
            steps = [step for step in steps if "slot_was_set" not in step]
            for first, second in zip(steps, steps[1:]):
                if "intent" in first and "action" in second:
                    handled.add(first["intent"])
                    assert second["action"] in domain.action_names_or_texts, second["action"]
    assert ALL_INTENTS <= handled, sorted(ALL_INTENTS - handled)
    # Intents answered by a custom action or a form; every other intent has its own response.
    action_intents = {"track_order", "cancel_order", "track_refund", "open_ticket", "ticket_status",
                      "contact_human_agent", "give_feedback"}
    # out_of_scope gets the generated reply (utter_generative, see the generative response policy).
    generated_intents = {"out_of_scope"}
    missing = [i for i in sorted(ALL_INTENTS - action_intents - generated_intents)
               if f"utter_{i}" not in domain.responses]
    assert not missing


def test_test_stories_cover_every_intent_and_flow():
    stories = load(REPO_ROOT / "tests" / "test_stories.yml")["stories"]
    intents = {step["intent"] for story in stories for step in story["steps"] if "intent" in step}
    actions = {step["action"] for story in stories for step in story["steps"] if "action" in step}
    assert ALL_INTENTS <= intents, sorted(ALL_INTENTS - intents)
    assert {"order_form", "ticket_form", "action_order_status", "action_cancel_order",
            "action_refund_status", "action_create_ticket", "action_ticket_status",
            "action_handoff", "action_feedback"} <= actions
    # The remembered order id: a second order action runs the form without asking again.
    remembered = [s for s in stories if sum(1 for st in s["steps"] if st.get("action") == "order_form") >= 2]
    assert remembered, "no test story with two order actions on the same order"


def test_regexes_match_the_id_formats():
    patterns = {}
    for block in load(REPO_ROOT / "data" / "nlu" / "entities.yml")["nlu"]:
        if "regex" in block:
            patterns[block["regex"]] = [line[2:] for line in block["examples"].splitlines() if line.startswith("- ")]

    def matches(entity, text):
        return any(re.search(p, text) for p in patterns[entity])

    assert matches("order_id", "cancel order 732201349959") and matches("order_id", "order ORD-40917")
    assert not matches("order_id", "I paid 1499 dollars")
    assert matches("invoice_id", "invoice #37777") and matches("invoice_id", "INV-20931")
    assert matches("email", "mail me at lena.rossi@example.com please")
    assert matches("ticket_id", "status of TCK-4K9D2Q") and not matches("ticket_id", "TCK-12")


def test_channels_and_endpoints():
    assert "rest" in load(REPO_ROOT / "credentials.yml")
    assert load(REPO_ROOT / "endpoints.yml")["action_endpoint"]["url"] == "http://localhost:5055/webhook"


def test_config_uses_the_bitext_importer_and_a_fallback_classifier():
    config = load(REPO_ROOT / "config.yml")
    names = [entry["name"] for entry in config["importers"]]
    assert names[:2] == ["RasaFileImporter", "nebras_bot.data.importer.BitextImporter"]
    assert 0 < config["importers"][1]["holdout_fraction"] < 1
    assert "FallbackClassifier" in [c["name"] for c in config["pipeline"]]
