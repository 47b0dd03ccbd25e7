"""Action server down: the user gets a clear apology, the ticket request is kept in the outbox, and
it is filed exactly once when the action server is back (a real ``rasa run actions`` process).

The calls go through Rasa's own ``RemoteAction.run`` (what the Rasa processor calls for every
custom action) with the endpoint ``nebras serve`` installs (``ResilientActionEndpoint``)."""
from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from reliability.conftest import child_env, free_port, stop, wait_http

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
SENDER = "outage-customer"
EMAIL = "outage.customer@example.com"
DESCRIPTION = "The blender I bought stopped working after two days."


@pytest.fixture(scope="module")
def domain():
    from rasa.shared.core.domain import Domain

    return Domain.load(str(ROOT / "domain.yml"))


def ticket_tracker(domain, sender: str = SENDER):
    from rasa.shared.core.events import ActionExecuted, SlotSet, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    tracker = DialogueStateTracker(sender, domain.slots)
    tracker.update_with_events([
        ActionExecuted("action_listen"),
        UserUttered("I want to open a support ticket", intent={"name": "open_ticket", "confidence": 0.99},
                    timestamp=1_700_000_000.0),
        ActionExecuted("action_listen"),
        UserUttered(EMAIL, intent={"name": "inform", "confidence": 0.99}, timestamp=1_700_000_010.0),
        SlotSet("email", EMAIL),
        ActionExecuted("action_listen"),
        UserUttered(DESCRIPTION, intent={"name": "inform", "confidence": 0.99}, timestamp=1_700_000_020.0),
        SlotSet("ticket_description", DESCRIPTION),
    ], domain)
    return tracker


def run_action(name: str, url: str, domain, tracker):
    from rasa.core.actions.action import RemoteAction
    from rasa.core.channels.channel import CollectingOutputChannel
    from rasa.core.nlg import TemplatedNaturalLanguageGenerator
    from rasa.utils.endpoints import EndpointConfig

    from nebras_bot.serving.action_fallback import ResilientActionEndpoint

    endpoint = ResilientActionEndpoint.wrap(EndpointConfig(url))
    action = RemoteAction(name, endpoint)
    return asyncio.run(action.run(CollectingOutputChannel(), TemplatedNaturalLanguageGenerator(domain.responses),
                                  tracker, domain))


def bot_texts(events) -> list:
    from rasa.shared.core.events import BotUttered

    return [e.text for e in events if isinstance(e, BotUttered)]


def rows(engine, table: str) -> list:
    with engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(sa.text(f"SELECT * FROM {table}"))]


@pytest.fixture
def support_db(tmp_path, monkeypatch):
    from nebras_bot.support import db
    from nebras_bot.support.service import reset_services

    url = f"sqlite:///{tmp_path / 'support.db'}"
    monkeypatch.setenv("NEBRAS_DB_URL", url)
    reset_services()
    yield url, db.connect(url)
    reset_services()


def test_wrap_keeps_the_endpoint_settings() -> None:
    from rasa.utils.endpoints import EndpointConfig

    from nebras_bot.serving.action_fallback import ResilientActionEndpoint

    original = EndpointConfig("http://127.0.0.1:1/webhook", token="secret", headers={"X-A": "1"})
    wrapped = ResilientActionEndpoint.wrap(original)
    assert isinstance(wrapped, ResilientActionEndpoint)
    assert (wrapped.url, wrapped.token, wrapped.headers) == (original.url, "secret", {"X-A": "1"})
    assert ResilientActionEndpoint.wrap(None) is None


def test_other_actions_apologise_and_validation_is_skipped(domain, support_db) -> None:
    dead = f"http://127.0.0.1:{free_port()}/webhook"
    events = run_action("action_order_status", dead, domain, ticket_tracker(domain))
    assert bot_texts(events) and "can't reach" in bot_texts(events)[0]
    assert run_action("validate_ticket_form", dead, domain, ticket_tracker(domain)) == []
    assert rows(support_db[1], "ticket_outbox") == []


def test_ticket_kept_while_down_then_filed_once(domain, support_db, tmp_path) -> None:
    url, engine = support_db
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/webhook"
    tracker = ticket_tracker(domain)

    # 1. the action server is down: apology, the request kept (a retry keeps one request)
    for _ in range(2):
        texts = bot_texts(run_action("action_create_ticket", webhook, domain, tracker))
        assert len(texts) == 1 and "kept" in texts[0] and "TCK-" not in texts[0], texts
    kept = rows(engine, "ticket_outbox")
    assert len(kept) == 1 and kept[0]["delivered_at"] is None
    assert rows(engine, "tickets") == []

    # 2. the action server comes back: its first action files the kept request
    log = tmp_path / "actions.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "rasa"), "run", "actions", "--port", str(port),
                                 "--actions", "actions"], cwd=str(ROOT), env=child_env(NEBRAS_DB_URL=url),
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=180, proc=proc, log=log)
        run_action("action_ticket_status", webhook, domain, ticket_tracker(domain, "someone-else"))
        tickets = rows(engine, "tickets")
        assert len(tickets) == 1, log.read_text()[-2000:]
        ticket = tickets[0]
        assert ticket["email"] == EMAIL and ticket["sender_id"] == SENDER and ticket["origin"] == "form"
        outbox = rows(engine, "ticket_outbox")
        assert outbox[0]["delivered_at"] is not None and outbox[0]["ticket_id"] == ticket["id"]
        # the action server's own /metrics (rasa_sdk plug-in) counts the ticket it filed
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert 'nebras_tickets_created_total{origin="form"} 1.0' in metrics, metrics[-1500:]

        # 3. the user retries the same request: the same ticket, not a second one
        texts = bot_texts(run_action("action_create_ticket", webhook, domain, tracker))
        assert any(ticket["id"] in t for t in texts), texts
        assert len(rows(engine, "tickets")) == 1
        # a later delivery round files nothing twice
        run_action("action_ticket_status", webhook, domain, ticket_tracker(domain, "third"))
        assert len(rows(engine, "tickets")) == 1
    finally:
        stop(proc)
