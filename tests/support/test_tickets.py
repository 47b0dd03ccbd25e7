import re
import threading
from unittest import mock

import pytest
import sqlalchemy as sa

from nebras_bot.support import db
from nebras_bot.support.outbox import Outbox
from nebras_bot.support.tickets import TicketNotFound, TicketStore, idempotency_key, normalise_ticket_id


def test_ticket_id_format_and_pii_scrubbed_transcript(engine, settings):
    store = TicketStore(engine, settings)
    ticket = store.create(
        description="Card 4111 1111 1111 1111 was charged twice, mail me at amira@example.com",
        idempotency_key="k1", email="amira@example.com",
        transcript=[{"role": "user", "text": "I'm amira@example.com, phone +44 20 7946 0958"},
                    {"role": "agent", "text": "Sorry to hear that."}],
    )
    assert re.fullmatch(r"TCK-[A-Z0-9]{6,}", ticket.id)
    assert ticket.created and ticket.status == "open"
    stored = store.get(ticket.id)
    assert stored.email == "amira@example.com"  # the contact address is kept in its own column
    text = stored.description + " ".join(t["text"] for t in stored.transcript)
    assert "amira@example.com" not in text and "4111" not in text and "7946" not in text
    assert "[EMAIL]" in text and "[PHONE]" in text


def test_same_idempotency_key_returns_the_same_ticket(engine, settings):
    store = TicketStore(engine, settings)
    first = store.create(description="parcel arrived broken", idempotency_key="same")
    second = store.create(description="parcel arrived broken", idempotency_key="same")
    assert second.id == first.id and not second.created
    assert store.count() == 1


def test_concurrent_identical_requests_create_one_ticket(engine, settings):
    store = TicketStore(engine, settings)
    ids = []

    def worker():
        ids.append(store.create(description="double submit", idempotency_key="race").id)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and store.count() == 1


def test_write_is_retried_on_connection_error_without_duplicates(engine, settings):
    store = TicketStore(engine, settings)
    real = store._insert_once
    calls = {"n": 0}

    def flaky(values):
        calls["n"] += 1
        if calls["n"] == 1:  # the insert commits, then the connection drops before the answer
            real(values)
            raise sa.exc.OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))
        return real(values)

    with mock.patch.object(store, "_insert_once", side_effect=flaky):
        ticket = store.create(description="retry me please", idempotency_key="retry")
    assert calls["n"] == 2
    assert store.count() == 1 and store.get(ticket.id) is not None


def test_resolve_records_the_agent_reply(engine, settings):
    store = TicketStore(engine, settings)
    ticket = store.create(description="where is my refund", idempotency_key="r")
    resolved = store.resolve(ticket.id.lower(), "Your refund was sent today; write to refunds@shop.example if not.")
    assert resolved.status == "resolved" and resolved.resolved_at is not None
    assert "[EMAIL]" in resolved.resolution
    assert [t.id for t in store.resolved_since(None)] == [ticket.id]
    assert store.resolved_since(resolved.resolved_at) == []
    with pytest.raises(TicketNotFound):
        store.resolve("TCK-NOPE000", "x")
    with pytest.raises(ValueError):
        store.resolve(ticket.id, "  ")


def test_normalise_ticket_id():
    assert normalise_ticket_id("status of tck-ab12cd34 please") == "TCK-AB12CD34"
    assert normalise_ticket_id("TCK AB12CD34") == "TCK-AB12CD34"
    assert normalise_ticket_id("TCK-AB1") is None
    assert normalise_ticket_id("") is None


def test_idempotency_key_depends_on_every_part():
    assert idempotency_key("a", 1.0, "x") == idempotency_key("a", 1.0, "x")
    assert idempotency_key("a", 1.0, "x") != idempotency_key("a", 2.0, "x")
    assert idempotency_key("a", None) != idempotency_key("a", "None ")


def test_outbox_delivers_each_request_once(engine, settings):
    outbox = Outbox(engine, settings)
    request = {"description": "kept while the action server was down", "idempotency_key": "ob1",
               "transcript": [{"role": "user", "text": "call me on +1 415 555 0100"}]}
    assert outbox.put(request) == outbox.put(request)  # stored once
    store = TicketStore(engine, settings)
    with mock.patch.object(TicketStore, "create", side_effect=sa.exc.OperationalError("x", {}, Exception("down"))):
        assert outbox.deliver(store) == []
    pending = outbox.pending()
    assert len(pending) == 1 and pending[0]["attempts"] == 1 and "down" in pending[0]["last_error"]
    delivered = outbox.deliver(store)
    assert len(delivered) == 1 and outbox.pending() == [] and outbox.deliver(store) == []
    assert store.count() == 1
    assert "555" not in " ".join(t["text"] for t in store.get(delivered[0].id).transcript)
