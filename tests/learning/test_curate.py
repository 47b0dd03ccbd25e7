import json

import yaml

from nebras_bot.learning import conversations as conv
from nebras_bot.learning.curate import FINETUNE_DIR, curate
from nebras_bot.learning.settings import LearningSettings
from nebras_bot.learning.store import SOURCE_EVENT, SOURCE_FEEDBACK, HarvestStore, event_key


def user(text, intent, confidence=0.9, ts=0.0, entities=()):
    return {"event": "user", "text": text, "timestamp": ts,
            "parse_data": {"intent": {"name": intent, "confidence": confidence},
                           "entities": [{"entity": k, "value": v} for k, v in entities]}}


def bot(text, ts=0.0, **meta):
    return {"event": "bot", "text": text, "timestamp": ts, "metadata": meta}


def action(name, ts=0.0):
    return {"event": "action", "name": name, "timestamp": ts}


CONVERSATION = [
    user("where is order 4587345", "track_order", ts=1, entities=[("order_id", "4587345")]),
    action("action_order_status", ts=2),
    bot("Order 4587345 was delivered to Austin.", ts=3, generated=False),
    user("blorf zzt", "nlu_fallback", confidence=0.2, ts=4),
    action("action_default_fallback", ts=5),
    bot("Sorry, I didn't get that.", ts=6),
    user("can I get a refund", "get_refund", ts=7),
    bot("Refunds are not possible.", ts=8, generated=True, model_version="m1"),
    user("ok and the invoice?", "get_invoice", confidence=0.4, ts=9),
    bot("Your invoice is in your account under Orders.", ts=10),
    user("I want a human", "contact_human_agent", ts=11),
    action("action_handoff", ts=12),
    bot("I've opened ticket TCK-AB12CD34 for you.", ts=13),
]


def test_conversation_is_cut_at_replies_that_must_not_be_learnt():
    c = conv.Conversation("s1", CONVERSATION, new_from=0)
    dialogues, removed = conv.dialogues(c, bad_replies={"Refunds are not possible."}, threshold=0.5)
    texts = [[t.text for t in d.turns] for d in dialogues]
    assert texts == [
        ["where is order 4587345", "Order {order_id} was delivered to Austin."],
        ["I want a human", "I've opened ticket {ticket_id} for you."],
    ]
    assert removed == {"thumbs_down": 1, "fallback": 2}
    # only segments with new replies come back
    old = conv.Conversation("s1", CONVERSATION, new_from=11)
    assert [d.turns[0].text for d in conv.dialogues(old, bad_replies=set(), threshold=0.5)[0]] == ["I want a human"]


def test_low_confidence_messages_and_review_file():
    c = conv.Conversation("s1", CONVERSATION, new_from=0)
    found = conv.low_confidence_messages(c, 0.5)
    assert [(m["text"], m["reason"]) for m in found] == [("blorf zzt", "nlu_fallback"),
                                                         ("ok and the invoice?", "low_confidence")]
    review = yaml.safe_load(conv.nlu_review_yaml(found))
    assert review["version"] == "3.1"
    assert {i["intent"]: i["examples"] for i in review["nlu"]} == {"get_invoice": "- ok and the invoice?\n",
                                                                    "nlu_fallback": "- blorf zzt\n"}
    # Rasa reads it as NLU training data (what `rasa interactive` / `rasa train` load after review)
    from rasa.shared.nlu.training_data.formats.rasa_yaml import RasaYAMLReader

    data = RasaYAMLReader().reads(conv.nlu_review_yaml(found))
    assert sorted((m.get("text"), m.get("intent")) for m in data.intent_examples) == [
        ("blorf zzt", "nlu_fallback"), ("ok and the invoice?", "get_invoice")]


def test_stories_export_is_rasa_story_yaml():
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.training_data.story_reader.yaml_story_reader import YAMLStoryReader

    text = conv.stories_yaml([conv.Conversation("s1", CONVERSATION, new_from=0)])
    domain = Domain.from_dict({"intents": ["track_order", "nlu_fallback", "get_refund", "get_invoice",
                                           "contact_human_agent"], "entities": ["order_id"],
                               "actions": ["action_order_status", "action_handoff"]})
    steps = YAMLStoryReader(domain).read_from_string(text)
    assert len(steps) == 1
    names = [e.as_story_string() for e in steps[0].events]
    assert any("track_order" in n for n in names) and "action_handoff" in names


def test_curate_writes_a_clean_versioned_dataset(support, base_dataset):
    store = HarvestStore(support.engine)
    questions = ["What fee do I pay if I cancel order 1001?", "what fee do i pay if i cancel order 1002",
                 "Is there a charge for cancelling?", "how much does it cost to cancel my subscription",
                 "cancellation penalty amount please", "Will I be charged when I cancel late?",
                 "do you bill a termination fee", "what are the costs of an early cancellation"]
    for number, question in enumerate(questions):
        ticket = support.tickets.create(description=f"{question} mail me at cust{number}@mail.com",
                                        idempotency_key=f"k{number}", intent="check_cancellation_fee")
        support.tickets.resolve(ticket.id, "Cancelling is free within 14 days; after that the fee is 5 euros.")
    # a duplicate of a base example and a thumbs-down reply
    store.add_many([(event_key("s9", e), SOURCE_EVENT, "s9", e) for e in (
        user("cancel my order", "cancel_order", ts=1), bot("I can cancel it for you; which order is it?", ts=2),
        user("is it free?", "check_cancellation_fee", ts=3), bot("Fees apply, sorry.", ts=4))])
    store.add_many([("feedback:1", SOURCE_FEEDBACK, "s9", {"rating": "down", "bot_text": "Fees apply, sorry."})])
    from nebras_bot.learning.harvest import harvest_tickets

    assert harvest_tickets(store, support.tickets) == 8
    settings = LearningSettings(new_eval_fraction=0.25, new_example_repeats=2, replay_examples=3)
    curated = curate(store, 0, settings, base=base_dataset)
    d = curated.directory
    assert d.name == curated.version and len(curated.version) == 12
    learning = curated.card["learning"]
    assert learning["removed"]["thumbs_down"] == 1 and learning["removed"]["already_in_base"] == 1
    assert learning["removed"]["exact_duplicate"] == 1  # the two tickets differing only by digits/case
    assert learning["diff"]["intents_added"] == ["check_cancellation_fee"]
    assert len(curated.new_eval) >= 1 and learning["new_train"] >= 1
    everything = "".join(p.read_text() for p in d.rglob("*") if p.is_file())
    assert "@mail.com" not in everything and "Fees apply" not in everything
    assert (d / "validation.jsonl").read_text() == (base_dataset / "validation.jsonl").read_text()
    train = (d / "train.jsonl").read_text().splitlines()
    assert learning["new_dialogues"] == 7 and learning["new_train"] + learning["new_eval"] == 7
    assert len(train) == 7 + learning["new_train"]
    finetune = (d / FINETUNE_DIR / "train.jsonl").read_text().splitlines()
    assert len(finetune) == 2 * learning["new_train"] + 3
    assert "check_cancellation_fee" in (d / "new.csv").read_text()
    assert "continuous learning" in (d / "data_card.md").read_text()
    # the same material gives the same version
    again = curate(store, 0, settings, base=base_dataset)
    assert again.version == curated.version
    # nothing new after the watermark: no dataset
    assert curate(store, store.max_id(), settings, base=base_dataset).version is None
