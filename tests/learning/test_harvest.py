import json

import pytest

from nebras_bot.learning.harvest import harvest, harvest_tracker, ticket_dialogue, tracker_url_from_endpoints
from nebras_bot.learning.settings import LearningSettings
from nebras_bot.learning.store import SOURCE_EVENT, SOURCE_FEEDBACK, SOURCE_TICKET, HarvestStore, event_key


def test_tickets_and_feedback_are_harvested_once_past_the_watermark(support):
    store = HarvestStore(support.engine)
    first = support.tickets.create(description="How much is the fee to cancel my plan?", idempotency_key="a",
                                   intent="check_cancellation_fee", email="x@y.org")
    support.tickets.create(description="still open, not harvested", idempotency_key="b")
    support.tickets.resolve(first.id, "Cancelling within 14 days is free; after that the fee is 10% of the order.")
    support.feedback.record(rating="down", bot_text="Sorry, I can't help.", user_text="fee?")
    report = harvest(store, LearningSettings())
    assert (report.tickets, report.feedback, report.tracker_events) == (1, 1, 0)
    assert "no SQL tracker store" in report.notes[0]
    [ticket_row] = store.rows(source=SOURCE_TICKET)
    turns = ticket_row["payload"]["turns"]
    assert turns[0]["text"] == "How much is the fee to cancel my plan?" and turns[0]["intent"] == "check_cancellation_fee"
    assert turns[1]["text"].startswith("Cancelling within 14 days")
    # nothing new: nothing harvested twice
    again = harvest(store, LearningSettings())
    assert (again.tickets, again.feedback) == (0, 0) and len(store.rows()) == 2
    # a later resolution of the same ticket is new material
    support.tickets.resolve(first.id, "Update: cancelling is free within 30 days now.")
    assert harvest(store, LearningSettings()).tickets == 1
    assert len(store.rows(source=SOURCE_TICKET)) == 2 and store.watermarks()["feedback.id"] == "1"


def test_handoff_ticket_uses_the_customers_last_message(support):
    ticket = support.tickets.create(description="Customer asked for a human agent: agent please",
                                    idempotency_key="h", origin="handoff", intent="contact_human_agent",
                                    transcript=[{"role": "user", "text": "my refund never came"},
                                                {"role": "agent", "text": "Sorry!"},
                                                {"role": "user", "text": "agent please"}])
    support.tickets.resolve(ticket.id, "We re-issued the refund today.")
    dialogue = ticket_dialogue(support.tickets.get(ticket.id))
    assert dialogue.turns[0].text == "agent please" and dialogue.turns[0].intent is None  # a form intent is no topic


def test_event_key_is_the_same_from_tracker_and_broker():
    event = {"event": "user", "text": "hi", "timestamp": 1700000000.123456}
    assert event_key("s", event) == event_key("s", json.loads(json.dumps(event)))
    assert event_key("s", event) != event_key("s", dict(event, timestamp=1700000000.5))


def test_tracker_url_from_endpoints(tmp_path, monkeypatch):
    endpoints = tmp_path / "endpoints.yml"
    endpoints.write_text("action_endpoint:\n  url: http://localhost:5055/webhook\n")
    assert tracker_url_from_endpoints(endpoints) is None
    monkeypatch.setenv("DB_PASSWORD", "s3cret")
    endpoints.write_text("tracker_store:\n  type: SQL\n  dialect: postgresql\n  url: 127.0.0.1\n  port: 5432\n"
                         "  db: rasa\n  username: postgres\n  password: ${DB_PASSWORD}\n")
    assert tracker_url_from_endpoints(endpoints) == "postgresql://postgres:s3cret@127.0.0.1:5432/rasa"
    monkeypatch.setenv("NEBRAS_HOME", str(tmp_path))
    endpoints.write_text("tracker_store:\n  type: SQL\n  db: var/trackers.db\n")
    assert tracker_url_from_endpoints(endpoints) == f"sqlite:///{tmp_path.resolve() / 'var' / 'trackers.db'}"
    endpoints.write_text("tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: /srv/rasa.db\n")
    assert tracker_url_from_endpoints(endpoints) == "sqlite:////srv/rasa.db"


async def test_rasa_sql_tracker_store_events_are_harvested_incrementally(support, tmp_path):
    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    tracker_db = tmp_path / "rasa.db"
    rasa_store = SQLTrackerStore(Domain.empty(), dialect="sqlite", db=str(tracker_db))
    tracker = DialogueStateTracker.from_events("cust-1", [
        UserUttered("where is my order", {"name": "track_order", "confidence": 0.95}, timestamp=10.0),
        ActionExecuted("action_order_status", timestamp=11.0),
        BotUttered("Order {order_id} has shipped.", metadata={"generated": True, "model_version": "m1"}, timestamp=12.0),
    ])
    await rasa_store.save(tracker)
    store = HarvestStore(support.engine)
    url = f"sqlite:///{tracker_db}"
    assert harvest_tracker(store, url) == 3
    assert harvest_tracker(store, url) == 0
    tracker.update(UserUttered("thanks", {"name": "thank_you", "confidence": 0.99}, timestamp=20.0))
    await rasa_store.save(tracker)
    assert harvest_tracker(store, url) == 1
    events = [r["payload"] for r in store.rows(source=SOURCE_EVENT)]
    assert [e["event"] for e in events] == ["user", "action", "bot", "user"]
    assert events[2]["metadata"]["model_version"] == "m1" and {r["sender_id"] for r in store.rows()} == {"cust-1"}


async def test_shipped_endpoints_tracker_store_is_harvested_by_default(support, home, repo_root):
    """endpoints.yml's SQL tracker store, built by Rasa as `rasa shell`/`rasa run` build it, writes
    under var/ and `nebras learn`'s harvest finds it with no extra configuration."""
    import shutil

    from rasa.core.brokers.broker import EventBroker
    from rasa.core.tracker_store import SQLTrackerStore, TrackerStore
    from rasa.core.utils import AvailableEndpoints
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    shutil.copyfile(repo_root / "endpoints.yml", home / "endpoints.yml")
    (home / "var").mkdir(exist_ok=True)  # in the repository: var/.gitkeep
    endpoints = AvailableEndpoints.read_endpoints(str(home / "endpoints.yml"))
    rasa_store = TrackerStore.create(endpoints.tracker_store, Domain.empty(), await EventBroker.create(None))
    assert isinstance(rasa_store, SQLTrackerStore)
    tracker = DialogueStateTracker.from_events("shell-user", [
        UserUttered("where is my parcel", {"name": "track_order", "confidence": 0.9}, timestamp=1.0)])
    await rasa_store.save(tracker)
    assert (home / "var" / "tracker.db").is_file()

    store = HarvestStore(support.engine)
    report = harvest(store, LearningSettings())
    assert report.tracker_events == 1 and not report.notes
    assert [r["payload"]["text"] for r in store.rows(source=SOURCE_EVENT)] == ["where is my parcel"]


async def test_harvested_events_are_pii_scrubbed_and_keep_their_key(support, tmp_path):
    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    from nebras_bot.learning.harvest import scrubbed_event

    text = "mail me at lena.k@mail.de or call +49 30 1234567"
    parse = {"name": "contact_customer_service", "confidence": 0.9}
    entity = {"entity": "email", "value": "lena.k@mail.de", "start": 11, "end": 25}
    rasa_store = SQLTrackerStore(Domain.empty(), dialect="sqlite", db=str(tmp_path / "rasa.db"))
    await rasa_store.save(DialogueStateTracker.from_events("cust-pii", [
        UserUttered(text, parse, entities=[entity], timestamp=5.0)]))
    store = HarvestStore(support.engine)
    assert harvest_tracker(store, f"sqlite:///{tmp_path / 'rasa.db'}") == 1
    [row] = store.rows(source=SOURCE_EVENT)
    dump = json.dumps(row["payload"])
    assert "lena.k@mail.de" not in dump and "1234567" not in dump and "mail me at" in dump
    # the broker's copy of the same (raw) event gets the same key: stored once
    raw = {"event": "user", "text": text, "timestamp": 5.0, "parse_data": {"text": text, "entities": [entity]}}
    assert event_key("cust-pii", raw) == row["key"]
    assert store.add_many([(event_key("cust-pii", raw), SOURCE_EVENT, "cust-pii", scrubbed_event(raw))]) == 0
