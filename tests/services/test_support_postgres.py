"""Ticket, order and feedback storage on the machine's PostgreSQL (``NEBRAS_DB_URL``), driven
through the real actions and the ``nebras`` commands, as the action server and an operator use it."""
from __future__ import annotations

import re
import threading

import pytest
import sqlalchemy as sa
from rasa_sdk import Tracker
from rasa_sdk.events import ConversationPaused, SlotSet
from rasa_sdk.executor import CollectingDispatcher

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]

TICKET_ID = re.compile(r"TCK-[A-Z0-9]{6,}")


def tracker(text, intent, *, slots=None, entities=(), events=None, sender="pg-user"):
    latest = {"text": text, "intent": {"name": intent, "confidence": 0.93},
              "entities": [{"entity": k, "value": v} for k, v in entities]}
    history = events if events is not None else [{"event": "user", "text": text, "timestamp": 100.0,
                                                  "parse_data": latest}]
    return Tracker(sender, dict(slots or {}), latest, history, False, None, {}, "action_listen")


def run(action, t):
    dispatcher = CollectingDispatcher()
    events = action.run(dispatcher, t, {})
    return [m["text"] for m in dispatcher.messages], events


def test_schema_is_created_on_postgresql_and_orders_are_seeded(home, fresh_pg, capsys):
    from actions.orders import ActionOrderStatus
    from nebras_bot.cli import main as nebras
    from nebras_bot.support import orders as o

    assert nebras(["db", "migrate"]) == 0 and "postgresql://" in capsys.readouterr().out
    assert nebras(["db", "seed"]) == 0
    assert nebras(["db", "seed"]) == 0  # seeding twice adds nothing
    engine = sa.create_engine(fresh_pg, future=True)
    with engine.connect() as connection:
        tables = set(sa.inspect(connection).get_table_names())
        count = connection.execute(sa.text("SELECT count(*) FROM orders")).scalar()
    engine.dispose()
    assert {"tickets", "orders", "feedback", "ticket_outbox"} <= tables and count == len(o.seed_rows())
    shipped = next(r for r in o.seed_rows() if r["status"] == o.SHIPPED)
    [text], _ = run(ActionOrderStatus(), tracker("where is it", "track_order", slots={"order_id": shipped["order_id"]}))
    assert shipped["tracking_number"] in text
    [text], _ = run(ActionOrderStatus(), tracker("where is it", "track_order", slots={"order_id": "99999999"}))
    assert "99999999" in text and "couldn't find" in text.lower()


def test_tickets_on_postgresql_are_idempotent_under_concurrent_retries(home):
    from actions.tickets import ActionCreateTicket
    from nebras_bot.support.service import get_service

    slots = {"email": "nour@example.com", "ticket_description": "The blender arrived with a cracked jar"}
    results, barrier = [], threading.Barrier(6)

    def retry():  # Rasa (or a proxy) retrying the same action call, all at once
        barrier.wait()
        results.append(run(ActionCreateTicket(), tracker("The blender arrived with a cracked jar", "inform",
                                                         slots=slots)))

    threads = [threading.Thread(target=retry) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = {TICKET_ID.search(texts[0]).group() for texts, _ in results}
    assert len(results) == 6 and len(ids) == 1
    support = get_service()
    assert support.tickets.count() == 1
    [ticket_id] = ids
    stored = support.tickets.get(ticket_id)
    assert stored.email == "nour@example.com" and stored.status == "open"


def test_handoff_transcript_is_scrubbed_and_resolve_command_works_on_postgresql(home, fresh_pg, capsys):
    from actions.tickets import ActionHandoff, ActionTicketStatus
    from nebras_bot.cli import main as nebras

    history = [
        {"event": "user", "text": "my card 4111 1111 1111 1111 was charged twice", "timestamp": 1.0},
        {"event": "bot", "text": "I'm sorry to hear that."},
        {"event": "user", "text": "let me talk to a person, call me on +44 20 7946 0958", "timestamp": 2.0},
    ]
    [text], events = run(ActionHandoff(), tracker("let me talk to a person", "contact_human_agent", events=history))
    ticket_id = TICKET_ID.search(text).group()
    assert ConversationPaused() in events and SlotSet("ticket_id", ticket_id) in events
    engine = sa.create_engine(fresh_pg, future=True)
    with engine.connect() as connection:
        raw = " ".join(str(v) for v in connection.execute(
            sa.text("SELECT * FROM tickets WHERE id = :id"), {"id": ticket_id}).one())
    engine.dispose()
    assert "4111" not in raw and "7946" not in raw and "charged twice" in raw  # the row itself, not a view of it

    assert nebras(["tickets", "resolve", ticket_id, "--reply", "We refunded the second charge today."]) == 0
    assert f"{ticket_id} resolved" in capsys.readouterr().out
    [status], _ = run(ActionTicketStatus(), tracker(f"status of {ticket_id}", "ticket_status"))
    assert "resolved" in status and "refunded the second charge" in status
    assert nebras(["tickets", "resolve", "TCK-NOSUCH00", "--reply", "x"]) == 1
    assert "no ticket TCK-NOSUCH00" in capsys.readouterr().err


def test_feedback_is_stored_with_the_rated_reply_on_postgresql(home):
    from actions.feedback import ActionFeedback
    from nebras_bot.support.service import get_service

    history = [
        {"event": "user", "text": "can I pay with paypal?", "timestamp": 1.0},
        {"event": "bot", "text": "Yes, we accept PayPal and cards.", "metadata": {"generated": True, "model_version": "m-42"}},
        {"event": "user", "text": "thumbs up", "timestamp": 2.0},
    ]
    run(ActionFeedback(), tracker("thumbs up", "give_feedback", events=history, entities=[("rating", "up")]))
    [row] = get_service().feedback.since(0)
    assert (row.rating, row.bot_text, row.generated, row.model_version, row.user_text) == (
        "up", "Yes, we accept PayPal and cards.", True, "m-42", "can I pay with paypal?")
