"""The ticket outbox: ticket requests kept while they cannot be delivered, delivered exactly once.

``Outbox.put()`` stores a request under its idempotency key (putting the same request twice keeps
one row); ``Outbox.deliver()`` creates the pending tickets through :class:`TicketStore` (which is
itself idempotent on that key) and marks them delivered.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from nebras_bot.support import db
from nebras_bot.support.scrub import scrub
from nebras_bot.support.settings import SupportSettings
from nebras_bot.support.tickets import ORIGIN_OUTBOX, Ticket, TicketStore, scrub_transcript


class Outbox:
    def __init__(self, engine: Optional[Engine] = None, settings: Optional[SupportSettings] = None):
        self.settings = settings or SupportSettings()
        self.engine = engine or db.connect(settings=self.settings)

    def put(self, request: Dict[str, Any]) -> int:
        """Keep a ticket request (``TicketStore.create`` keyword arguments); returns the outbox row id."""
        key = request.get("idempotency_key")
        if not key or not request.get("description"):
            raise ValueError("an outbox request needs 'idempotency_key' and 'description'")
        payload = dict(request)
        payload.setdefault("origin", ORIGIN_OUTBOX)
        payload["description"] = scrub(str(payload["description"]))
        payload["transcript"] = scrub_transcript(payload.get("transcript") or [], self.settings.max_transcript_turns)
        for attempt in db.retrying(self.settings):
            with attempt:
                with self.engine.begin() as connection:
                    row = connection.execute(
                        sa.select(db.ticket_outbox.c.id).where(db.ticket_outbox.c.idempotency_key == key)
                    ).first()
                    if row:
                        return int(row[0])
                    result = connection.execute(db.ticket_outbox.insert().values(
                        idempotency_key=key, payload=json.dumps(payload), attempts=0, created_at=db.utcnow()))
                    return int(result.inserted_primary_key[0])
        raise AssertionError("unreachable")  # pragma: no cover

    def pending(self) -> List[Dict[str, Any]]:
        query = sa.select(db.ticket_outbox).where(db.ticket_outbox.c.delivered_at.is_(None)).order_by(db.ticket_outbox.c.id)
        with self.engine.connect() as connection:
            return [dict(r._mapping) for r in connection.execute(query)]

    def deliver(self, store: Optional[TicketStore] = None) -> List[Ticket]:
        """Create every pending ticket; failures stay pending with the error recorded."""
        store = store or TicketStore(self.engine, self.settings)
        delivered = []
        for row in self.pending():
            try:
                ticket = store.create(**json.loads(row["payload"]))
            except Exception as error:  # noqa: BLE001 - recorded, retried on the next delivery
                with self.engine.begin() as connection:
                    connection.execute(db.ticket_outbox.update().where(db.ticket_outbox.c.id == row["id"]).values(
                        attempts=row["attempts"] + 1, last_error=f"{type(error).__name__}: {error}"[:500]))
                continue
            with self.engine.begin() as connection:
                connection.execute(db.ticket_outbox.update().where(db.ticket_outbox.c.id == row["id"]).values(
                    attempts=row["attempts"] + 1, ticket_id=ticket.id, delivered_at=db.utcnow(), last_error=None))
            delivered.append(ticket)
        return delivered
