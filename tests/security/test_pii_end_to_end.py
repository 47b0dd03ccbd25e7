"""PII seeded through the chat API never lands in a log line, a support-database table or a dataset
file made from the conversations (harvest -> curate -> exports of ``nebras learn``).

What may hold it, by design: Rasa's tracker store (the live conversation state the bot needs, e.g.
to fill slots; protected like the database itself) and a ticket's ``email`` column (the contact
address the customer gave for that ticket: here a separate, non-seeded address).
"""
from __future__ import annotations

import io
import json
import logging
import re
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.timeout(300)

EMAIL = "jane.secretive@example.org"
PHONE = "+44 7911 123456"
CARD = "4111 1111 1111 1111"
IBAN = "DE89 3704 0044 0532 0130 00"
CONTACT = "contact.allowed@example.net"
SEEDED = {"email": EMAIL, "phone": PHONE, "card": CARD, "iban": IBAN}

MESSAGES = [
    f"hello, my email is {EMAIL}",
    f"call me on {PHONE} please",
    f"I paid with card {CARD} and it failed",
    f"refund to my IBAN {IBAN} thanks",
    f"all of it: {EMAIL}, phone {PHONE}, card {CARD}, iban {IBAN}.",
]


def forms(value: str) -> list:
    """The seeded value as written and as its bare digits/characters (catches re-formatting)."""
    compact = re.sub(r"[\s+-]", "", value)
    return [value.lower(), compact.lower()] if compact != value else [value.lower()]


def leaks(text: str) -> list:
    low = re.sub(r"[\s+-]", "", text.lower())
    spaced = text.lower()
    return [name for name, value in SEEDED.items()
            if any(f in spaced or re.sub(r"[\s+-]", "", f) in low for f in forms(value))]


@pytest.fixture
def log_stream():
    from nebras_bot.monitoring.logging import configure_logging

    stream = io.StringIO()
    configure_logging(logging.INFO, json_logs=True, stream=stream)
    yield stream
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_nebras", False):
            root.removeHandler(handler)


def test_seeded_pii_is_nowhere(serving_bot_model, tmp_path, monkeypatch, log_stream) -> None:
    from fastapi.testclient import TestClient

    from nebras_bot.learning.curate import curate
    from nebras_bot.learning.harvest import harvest
    from nebras_bot.learning.pipeline import write_exports
    from nebras_bot.learning.settings import LearningSettings
    from nebras_bot.learning.store import HarvestStore
    from nebras_bot.serving.app import create_app
    from nebras_bot.serving.settings import ServingSettings
    from nebras_bot.support import db
    from nebras_bot.support.service import reset_services

    from learning.conftest import exchange, write_dataset

    support_url = f"sqlite:///{tmp_path / 'support.db'}"
    trackers = tmp_path / "trackers.db"
    monkeypatch.setenv("NEBRAS_DB_URL", support_url)
    monkeypatch.setenv("NEBRAS_HOME", str(tmp_path))
    reset_services()
    endpoints = tmp_path / "endpoints.yml"
    endpoints.write_text(f"tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: {trackers}\n")
    app = create_app(ServingSettings(model=serving_bot_model, endpoints=endpoints, rate_limit_per_minute=0,
                                     web_chat=False))
    with TestClient(app) as client:
        deadline = time.monotonic() + 240
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readyz").json()
            time.sleep(0.5)
        for n, text in enumerate(MESSAGES):
            assert client.post("/v1/chat", json={"sender_id": f"pii-{n % 2}", "message": text}).status_code == 200
        for n, text in enumerate(MESSAGES):
            response = client.post("/v1/tickets", json={"email": CONTACT, "description": f"Problem: {text}",
                                                        "sender_id": f"pii-{n % 2}"})
            assert response.status_code in (200, 201), response.text
        response = client.post("/v1/feedback", json={"sender_id": "pii-0", "rating": "down",
                                                     "comment": f"bad answer, write to {EMAIL} or {PHONE}"})
        assert response.status_code in (200, 201), response.text
        client.post("/v1/chat", json={"sender_id": "pii-x", "message": "x" * 5000 + EMAIL})  # rejected, 422

    # the continuous-learning harvest, curation and exports over everything above
    engine = db.connect(support_url)
    store = HarvestStore(engine)
    harvest(store, LearningSettings(), tracker_url=f"sqlite:///{trackers}", broker=False)
    base = write_dataset(tmp_path / "base", {
        "train": [exchange(f"b{i}", "greet", "hi", "Hello!") for i in range(3)],
        "validation": [exchange("v0", "greet", "hello", "Hi!")], "test": []})
    settings = LearningSettings(min_new_examples=1)
    curated = curate(store, 0, settings, base=base, out_root=tmp_path / "datasets")
    write_exports(curated, "run-pii", settings)

    found = {}
    logs = log_stream.getvalue()
    assert '"event": "request"' in logs or "request" in logs, "nothing was logged: the check proves nothing"
    for number, line in enumerate(logs.splitlines()):
        if leaks(line):
            found[f"log line {number}"] = (leaks(line), line[:300])
    with engine.connect() as connection:
        inspector = sa.inspect(connection)
        tables = inspector.get_table_names()
        assert {"tickets", "feedback", "harvest"} <= set(tables)
        for table in tables:
            for row in connection.execute(sa.text(f"SELECT * FROM {table}")):
                for column, value in row._mapping.items():
                    if table == "tickets" and column == "email":
                        assert value == CONTACT
                        continue
                    if isinstance(value, str) and leaks(value):
                        found[f"{table}.{column}"] = (leaks(value), value[:300])
        assert connection.execute(sa.text("SELECT count(*) FROM harvest")).scalar() > 0
    files = [p for root in (tmp_path / "datasets", settings.exports_path()) if root.exists()
             for p in root.rglob("*") if p.is_file()]
    assert files, "curation wrote no dataset: the check proves nothing"
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        if leaks(text):
            found[str(path)] = (leaks(text), "")
    # the tracker store DOES hold the raw text (by design): the seeding really happened
    assert leaks(trackers.read_bytes().decode("utf-8", errors="replace"))
    assert not found, json.dumps(found, indent=1)[:4000]
    reset_services()


def test_harvested_slot_values_are_scrubbed() -> None:
    from nebras_bot.learning.harvest import scrubbed_event

    event = scrubbed_event({"event": "slot", "name": "email", "value": EMAIL, "timestamp": 1.0})
    assert EMAIL not in json.dumps(event) and event["name"] == "email"


def test_adjacent_phone_and_card_are_scrubbed() -> None:
    from nebras_bot.data.pii import scrub

    assert not leaks(scrub(f"{PHONE} {CARD}"))
