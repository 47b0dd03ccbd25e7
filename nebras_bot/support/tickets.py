"""Support tickets: creation (idempotent, retried on connection errors), lookup, agent resolution.

A ticket id is ``TCK-`` followed by upper-case letters and digits. Every ticket carries an
``idempotency_key`` (unique): creating a ticket again with the same key returns the existing ticket
instead of a second one, which makes retried requests and retried database writes safe.
"""
from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from nebras_bot.support import db
from nebras_bot.support.scrub import scrub
from nebras_bot.support.settings import SupportSettings

TICKET_PREFIX = "TCK-"
TICKET_ALPHABET = string.ascii_uppercase + string.digits
TICKET_ID_PATTERN = re.compile(r"\bTCK-[A-Z0-9]{6,}\b")
STATUS_OPEN = "open"
STATUS_RESOLVED = "resolved"
ORIGIN_FORM = "form"
ORIGIN_HANDOFF = "handoff"
ORIGIN_OUTBOX = "outbox"


class TicketNotFound(LookupError):
    """No ticket has this id."""


@dataclass
class Ticket:
    id: str
    email: Optional[str]
    order_id: Optional[str]
    description: str
    transcript: List[Dict[str, str]]
    status: str
    resolution: Optional[str]
    origin: str
    sender_id: Optional[str]
    intent: Optional[str]
    idempotency_key: str
    created_at: datetime
    updated_at: datetime
    resolved_at: Optional[datetime] = None
    created: bool = field(default=False, compare=False)  # True when this call inserted it

    @classmethod
    def from_row(cls, row: Any, created: bool = False) -> "Ticket":
        data = dict(row._mapping)
        data["transcript"] = json.loads(data.get("transcript") or "[]")
        return cls(**data, created=created)


def new_ticket_id(length: int = 8) -> str:
    return TICKET_PREFIX + "".join(secrets.choice(TICKET_ALPHABET) for _ in range(max(6, length)))


def normalise_ticket_id(text: str) -> Optional[str]:
    """``tck-ab12cd34`` / ``TCK AB12CD34`` -> ``TCK-AB12CD34``; None if the text holds no ticket id."""
    if not text:
        return None
    candidate = re.sub(r"(?i)\btck[\s_-]*", TICKET_PREFIX, text.strip()).upper()
    match = TICKET_ID_PATTERN.search(candidate)
    return match.group() if match else None


def idempotency_key(*parts: Any) -> str:
    """A stable key for one request: sha256 over its identifying parts."""
    joined = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


def scrub_transcript(turns: Sequence[Dict[str, str]], limit: int) -> List[Dict[str, str]]:
    kept = [t for t in turns if t.get("text")][-limit:]
    return [{"role": str(t.get("role", "user")), "text": scrub(str(t["text"]))} for t in kept]


class TicketStore:
    """Tickets in the support database."""

    def __init__(self, engine: Optional[Engine] = None, settings: Optional[SupportSettings] = None):
        self.settings = settings or SupportSettings()
        self.engine = engine or db.connect(settings=self.settings)

    def create(
        self,
        *,
        description: str,
        idempotency_key: str,
        email: Optional[str] = None,
        order_id: Optional[str] = None,
        transcript: Sequence[Dict[str, str]] = (),
        origin: str = ORIGIN_FORM,
        sender_id: Optional[str] = None,
        intent: Optional[str] = None,
    ) -> Ticket:
        """Store a ticket, or return the one already stored under ``idempotency_key``.

        Connection errors are retried (tenacity); a write that committed before the connection
        dropped is found again through the key, so retries never duplicate a ticket.
        """
        if not description or not description.strip():
            raise ValueError("a ticket needs a description")
        if not idempotency_key:
            raise ValueError("a ticket needs an idempotency key")
        values = {
            "idempotency_key": idempotency_key,
            "sender_id": sender_id,
            "origin": origin,
            "email": email,
            "order_id": order_id,
            "intent": intent,
            "description": scrub(description.strip()),
            "transcript": json.dumps(scrub_transcript(transcript, self.settings.max_transcript_turns)),
            "status": STATUS_OPEN,
        }
        for attempt in db.retrying(self.settings):
            with attempt:
                return self._insert_once(values)
        raise AssertionError("unreachable")  # pragma: no cover

    def _insert_once(self, values: Dict[str, Any]) -> Ticket:
        existing = self.get_by_key(values["idempotency_key"])
        if existing is not None:
            return existing
        now = db.utcnow()
        row = dict(values, id=new_ticket_id(self.settings.ticket_id_length), created_at=now, updated_at=now)
        try:
            with self.engine.begin() as connection:
                connection.execute(db.tickets.insert().values(**row))
        except sa.exc.IntegrityError:
            existing = self.get_by_key(values["idempotency_key"])  # a concurrent request won
            if existing is None:
                raise
            return existing
        from nebras_bot.monitoring.metrics import TICKETS_CREATED

        TICKETS_CREATED.labels(origin=values["origin"]).inc()
        return Ticket.from_row(_Row(row), created=True)

    def get_by_key(self, key: str) -> Optional[Ticket]:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(db.tickets).where(db.tickets.c.idempotency_key == key)).first()
        return Ticket.from_row(row) if row else None

    def get(self, ticket_id: str) -> Optional[Ticket]:
        normalised = normalise_ticket_id(ticket_id) or ticket_id
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(db.tickets).where(db.tickets.c.id == normalised)).first()
        return Ticket.from_row(row) if row else None

    def resolve(self, ticket_id: str, reply: str) -> Ticket:
        """Record an agent's resolution text (the continuous-learning loop uses it as a target)."""
        if not reply or not reply.strip():
            raise ValueError("the resolution reply is empty")
        ticket = self.get(ticket_id)
        if ticket is None:
            raise TicketNotFound(ticket_id)
        now = db.utcnow()
        for attempt in db.retrying(self.settings):
            with attempt:
                with self.engine.begin() as connection:
                    connection.execute(
                        db.tickets.update()
                        .where(db.tickets.c.id == ticket.id)
                        .values(status=STATUS_RESOLVED, resolution=scrub(reply.strip()), resolved_at=now, updated_at=now)
                    )
        resolved = self.get(ticket.id)
        assert resolved is not None
        return resolved

    def list(self, status: Optional[str] = None, limit: int = 50) -> List[Ticket]:
        query = sa.select(db.tickets).order_by(db.tickets.c.created_at.desc()).limit(limit)
        if status:
            query = query.where(db.tickets.c.status == status)
        with self.engine.connect() as connection:
            return [Ticket.from_row(r) for r in connection.execute(query)]

    def resolved_since(self, after: Optional[datetime]) -> List[Ticket]:
        """Resolved tickets whose resolution was recorded after ``after`` (oldest first)."""
        query = sa.select(db.tickets).where(db.tickets.c.status == STATUS_RESOLVED)
        if after is not None:
            query = query.where(db.tickets.c.resolved_at > after)
        with self.engine.connect() as connection:
            return [Ticket.from_row(r) for r in connection.execute(query.order_by(db.tickets.c.resolved_at))]

    def count(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(db.tickets)).scalar())


class _Row:
    """Adapts a plain dict to the ``row._mapping`` interface of :meth:`Ticket.from_row`."""

    def __init__(self, values: Dict[str, Any]):
        defaults = {c.name: None for c in db.tickets.columns}
        self._mapping = {**defaults, **values}
