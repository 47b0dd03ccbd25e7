"""Rasa's SQL tracker store on the machine's PostgreSQL, configured in endpoints.yml and built by
Rasa itself, harvested by ``nebras learn``: conversations become the stories export and the NLU
review file, a ticket resolved on the same PostgreSQL becomes training data, and the whole run
(harvest store and watermarks on PostgreSQL too) promotes a candidate."""
from __future__ import annotations

import json

import pytest
import yaml

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]


def write_endpoints(home, pg_database):
    from services.conftest import PG_HOST, PG_PORT, PG_USER

    (home / "endpoints.yml").write_text(yaml.safe_dump({"tracker_store": {
        "type": "SQL", "dialect": "postgresql", "url": PG_HOST, "port": PG_PORT, "db": pg_database,
        "username": PG_USER}}))


async def rasa_tracker_store(home):
    """The tracker store exactly as `rasa run` builds it from endpoints.yml."""
    from rasa.core.brokers.broker import EventBroker
    from rasa.core.tracker_store import SQLTrackerStore, TrackerStore
    from rasa.core.utils import AvailableEndpoints
    from rasa.shared.core.domain import Domain

    endpoints = AvailableEndpoints.read_endpoints(str(home / "endpoints.yml"))
    store = TrackerStore.create(endpoints.tracker_store, Domain.empty(), await EventBroker.create(None))
    assert isinstance(store, SQLTrackerStore) and store.engine.dialect.name == "postgresql"
    return store


def conversation(sender: str, start: float):
    from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered

    return [
        UserUttered("hello there", {"name": "greet", "confidence": 0.98}, timestamp=start),
        ActionExecuted("utter_greet", timestamp=start + 1),
        BotUttered("Hi! How can I help?", metadata={"utter_action": "utter_greet"}, timestamp=start + 2),
        UserUttered("my parcel came soaking wet", {"name": "complaint", "confidence": 0.31}, timestamp=start + 3),
        ActionExecuted("utter_generative", timestamp=start + 4),
        BotUttered("I'm sorry it arrived damaged; I can open a ticket for you.",
                   metadata={"generated": True, "model_version": "m1"}, timestamp=start + 5),
    ]


async def test_conversations_in_the_postgresql_tracker_store_are_harvested_and_learnt(home, pg_database):
    from rasa.shared.core.events import UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    from nebras_bot.learning import proof
    from nebras_bot.learning.pipeline import PROMOTED, learn
    from nebras_bot.learning.store import SOURCE_EVENT, HarvestStore
    from nebras_bot.support.tickets import TicketStore
    from nebras_bot.training import registry

    write_endpoints(home, pg_database)
    rasa_store = await rasa_tracker_store(home)
    for sender, start in (("pg-alice", 10.0), ("pg-bob", 50.0)):
        await rasa_store.save(DialogueStateTracker.from_events(sender, conversation(sender, start)))

    # a current model and its dataset (the proof fixture's), and a ticket resolved on PostgreSQL
    proof.write_fixture(home)
    version = home / "models" / "nlg" / "v0"
    version.mkdir(parents=True)
    (version / "config.json").write_text("{}")
    (version / "nebras.json").write_text(json.dumps({"version": "v0", "dataset_version": "proof-base"}))
    registry.promote("v0")
    tickets = TicketStore()
    for n, question in enumerate(["what is the cancellation fee", "do I pay anything if I cancel late",
                                  "how much will cancelling cost me", "is cancelling free"]):
        ticket = tickets.create(description=question, idempotency_key=f"pg-{n}", intent=proof.MISSING_TOPIC)
        tickets.resolve(ticket.id, proof.TOPIC_REPLIES[n % 2])

    def trainer(*, data, base, out, settings):
        target = out / "cand"
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")
        (target / "nebras.json").write_text(json.dumps({"version": "cand"}))
        return target

    def evaluator(*, model, data, train, out, settings):
        better = model.name == "cand"
        return {"bits_per_byte": {"validation": 1.0, "new": 2.0 if better else 3.0}[data.stem]}

    record = learn(proof.learning_settings(), trainer=trainer, evaluator=evaluator)
    assert record.inputs["harvest"]["tracker_events"] == 12 and record.inputs["harvest"]["tickets"] == 4
    assert record.decision == PROMOTED and registry.current_version() == "cand"

    # the harvest store, on PostgreSQL, holds each event once; the exports are there for `rasa interactive`
    events = HarvestStore().rows(source=SOURCE_EVENT)
    assert len(events) == 12 and {e["sender_id"] for e in events} == {"pg-alice", "pg-bob"}
    stories = yaml.safe_load(open(record.exports["stories"]))["stories"]
    assert len(stories) == 2 and any(step.get("intent") == "complaint" for step in stories[0]["steps"])
    review = yaml.safe_load(open(record.exports["nlu_review"]))
    assert "my parcel came soaking wet" in json.dumps(review)

    # only what is new is harvested next time
    alice = await rasa_store.retrieve("pg-alice")
    alice.update(UserUttered("thanks a lot", {"name": "thank_you", "confidence": 0.99}, timestamp=100.0))
    await rasa_store.save(alice)
    again = learn(proof.learning_settings(), trainer=trainer, evaluator=evaluator)
    assert again.inputs["harvest"]["tracker_events"] == 1 and again.inputs["harvest"]["tickets"] == 0
    rasa_store.engine.dispose()
