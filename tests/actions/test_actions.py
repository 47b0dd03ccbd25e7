"""Actions called the way the action server calls them: ``action.run(dispatcher, tracker, domain)``."""
import re

import pytest
from rasa_sdk import Tracker
from rasa_sdk.events import ConversationPaused, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.feedback import ActionFeedback
from actions.forms import ValidateOrderForm, ValidateTicketForm
from actions.orders import ActionCancelOrder, ActionOrderStatus, ActionRefundStatus
from actions.tickets import ActionCreateTicket, ActionHandoff, ActionTicketStatus
from nebras_bot.support import orders as o

DOMAIN = {
    "slots": {name: {"type": "text", "mappings": [{"type": "from_entity", "entity": name}]}
              for name in ("order_id", "email", "ticket_id", "rating")},
    "forms": {"order_form": {"required_slots": ["order_id"]},
              "ticket_form": {"required_slots": ["email", "ticket_description"]}},
}
DOMAIN["slots"]["ticket_description"] = {"type": "text", "mappings": [{"type": "from_text"}]}


def tracker(text="hi", intent="greet", slots=None, entities=(), events=None, sender="user-1", loop=None):
    latest = {"text": text, "intent": {"name": intent, "confidence": 0.9},
              "entities": [{"entity": k, "value": v} for k, v in entities]}
    history = events if events is not None else [{"event": "user", "text": text, "timestamp": 100.0, "parse_data": latest}]
    return Tracker(sender, dict(slots or {}), latest, history, False, None, {"name": loop} if loop else {}, "action_listen")


def run(action, t):
    dispatcher = CollectingDispatcher()
    events = action.run(dispatcher, t, DOMAIN)
    return [m["text"] for m in dispatcher.messages], events


@pytest.fixture
def seeded(support):
    o.seed(support.orders)
    return support


def by_status(status):
    return next(r for r in o.seed_rows() if r["status"] == status)


def test_order_actions_look_up_real_orders(seeded):
    shipped = by_status(o.SHIPPED)
    [text], events = run(ActionOrderStatus(), tracker(slots={"order_id": shipped["order_id"]}))
    assert shipped["tracking_number"] in text and events == []
    processing = by_status(o.PROCESSING)["order_id"]
    [text], events = run(ActionCancelOrder(), tracker(entities=[("order_id", "#" + processing)]))
    assert "is cancelled" in text and SlotSet("order_id", processing) in events
    [text], _ = run(ActionRefundStatus(), tracker(slots={"order_id": processing}))
    assert "refund" in text and "pending" in text


@pytest.mark.parametrize("action", [ActionOrderStatus(), ActionCancelOrder(), ActionRefundStatus()])
def test_unknown_order_is_a_clear_answer(seeded, action):
    [text], _ = run(action, tracker(slots={"order_id": "55555555"}))
    assert "couldn't find an order with the number 55555555" in text


def test_order_form_validation(seeded):
    known = by_status(o.DELIVERED)["order_id"]
    form = ValidateOrderForm()
    dispatcher = CollectingDispatcher()
    assert form.validate_order_id("#" + known, dispatcher, tracker(), DOMAIN) == {"order_id": known}
    assert form.validate_order_id("12", dispatcher, tracker(), DOMAIN) == {"order_id": None}
    assert form.validate_order_id("88888888", dispatcher, tracker(), DOMAIN) == {"order_id": None}
    assert len(dispatcher.messages) == 2


async def test_ticket_form_validates_through_run(seeded):
    t = tracker(text="it's amira@example", slots={"email": "amira@example", "requested_slot": "email"},
                loop="ticket_form")
    t.events.append({"event": "slot", "name": "email", "value": "amira@example"})
    dispatcher = CollectingDispatcher()
    events = await ValidateTicketForm().run(dispatcher, t, DOMAIN)
    assert SlotSet("email", None) in events and "doesn't look right" in dispatcher.messages[0]["text"]

    # the optional order id is validated too when the user gives one during the form
    t = tracker(text="order 77777777", slots={"order_id": "77777777", "requested_slot": "ticket_description"},
                loop="ticket_form")
    t.events.append({"event": "slot", "name": "order_id", "value": "77777777"})
    dispatcher = CollectingDispatcher()
    events = await ValidateTicketForm().run(dispatcher, t, DOMAIN)
    assert SlotSet("order_id", None) in events and "without an order number" in dispatcher.messages[0]["text"]

    form = ValidateTicketForm()
    dispatcher = CollectingDispatcher()
    assert form.validate_email(" Amira@Example.com ", dispatcher, t, DOMAIN) == {"email": "Amira@example.com"}
    assert form.validate_order_id("77777777", dispatcher, t, DOMAIN) == {"order_id": None}  # optional: dropped
    known = by_status(o.SHIPPED)["order_id"]
    assert form.validate_order_id(known, dispatcher, t, DOMAIN) == {"order_id": known}
    assert form.validate_ticket_description("broken", dispatcher, t, DOMAIN) == {"ticket_description": None}
    assert form.validate_ticket_description("The zipper broke after one day", dispatcher, t, DOMAIN) == {
        "ticket_description": "The zipper broke after one day"}


def test_create_ticket_is_idempotent_for_a_retried_request(seeded):
    slots = {"email": "amira@example.com", "ticket_description": "The headphones stopped charging",
             "order_id": by_status(o.DELIVERED)["order_id"]}
    [text], events = run(ActionCreateTicket(), tracker(text="The headphones stopped charging", slots=slots))
    ticket_id = re.search(r"TCK-[A-Z0-9]{6,}", text).group()
    assert SlotSet("ticket_id", ticket_id) in events and "amira@example.com" in text
    # Rasa retries the same call (same tracker): same ticket, nothing new stored
    [again], _ = run(ActionCreateTicket(), tracker(text="The headphones stopped charging", slots=slots))
    assert ticket_id in again and seeded.tickets.count() == 1
    # a new submission (a later user message) is a new ticket
    later = [{"event": "user", "text": "The headphones stopped charging", "timestamp": 250.0}]
    [other], _ = run(ActionCreateTicket(), tracker(slots=slots, events=later))
    assert ticket_id not in other and seeded.tickets.count() == 2
    stored = seeded.tickets.get(ticket_id)
    assert stored.email == "amira@example.com" and stored.description == "The headphones stopped charging"


def test_create_ticket_without_description_asks_for_it(seeded):
    [text], events = run(ActionCreateTicket(), tracker(slots={"email": "a@b.co"}))
    assert "description" in text and events == [] and seeded.tickets.count() == 0


def test_ticket_status_by_id(seeded):
    ticket = seeded.tickets.create(description="Charged twice for one order", idempotency_key="k")
    [text], _ = run(ActionTicketStatus(), tracker(entities=[("ticket_id", ticket.id.lower())]))
    assert ticket.id in text and "open" in text
    seeded.tickets.resolve(ticket.id, "We refunded the duplicate charge.")
    [text], _ = run(ActionTicketStatus(), tracker(text=f"what about {ticket.id}?"))
    assert "resolved" in text and "refunded the duplicate charge" in text
    [text], _ = run(ActionTicketStatus(), tracker(text="status of TCK-ZZZZZZZZ"))
    assert "couldn't find a ticket with the number TCK-ZZZZZZZZ" in text


def test_handoff_pauses_and_keeps_a_scrubbed_transcript(seeded):
    history = [
        {"event": "user", "text": "my card 4111 1111 1111 1111 was charged twice", "timestamp": 1.0},
        {"event": "bot", "text": "I'm sorry about that."},
        {"event": "user", "text": "I want a human, mail me at lena@mail.de", "timestamp": 2.0},
    ]
    [text], events = run(ActionHandoff(), tracker(intent="contact_human_agent", events=history))
    ticket_id = re.search(r"TCK-[A-Z0-9]{6,}", text).group()
    assert "human agent" in text and ConversationPaused() in events and SlotSet("ticket_id", ticket_id) in events
    stored = seeded.tickets.get(ticket_id)
    assert stored.origin == "handoff" and len(stored.transcript) == 3 and stored.intent == "contact_human_agent"
    dump = stored.description + str(stored.transcript)
    assert "4111" not in dump and "lena@mail.de" not in dump


def test_ticket_failure_apologises_and_keeps_the_request(seeded, monkeypatch):
    def down(**_):
        raise RuntimeError("database is down")

    monkeypatch.setattr(seeded.tickets, "create", down)
    import actions.common

    monkeypatch.setattr(actions.common, "get_service", lambda: seeded)
    [text], events = run(ActionCreateTicket(), tracker(slots={"ticket_description": "Parcel never arrived"}))
    assert "sorry" in text.lower() and len(seeded.outbox.pending()) == 1
    assert not any(e.get("name") == "ticket_id" for e in events)


def test_feedback_rates_the_previous_reply(seeded):
    history = [
        {"event": "user", "text": "how long does delivery take?", "timestamp": 1.0},
        {"event": "bot", "text": "Standard delivery takes 3-5 days.", "metadata": {"generated": True, "model_version": "v7"}},
        {"event": "user", "text": "thumbs down", "timestamp": 2.0},
    ]
    [text], events = run(ActionFeedback(), tracker(text="thumbs down", intent="give_feedback", events=history,
                                                   entities=[("rating", "down")]))
    assert "improve" in text and events == [SlotSet("rating", None)]
    [row] = seeded.feedback.since(0)
    assert (row.rating, row.bot_text, row.generated, row.model_version) == ("down", "Standard delivery takes 3-5 days.", True, "v7")
