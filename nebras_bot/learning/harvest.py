"""Step 1 of ``nebras learn``: collect what happened since the last watermark into the harvest store.

Sources: resolved tickets (the agent's resolution is the target reply), feedback, Rasa's SQL tracker
store (the ``events`` table of ``rasa.core.tracker_store.SQLTrackerStore``, SQLite or PostgreSQL),
and optionally Rasa's pika event broker (a RabbitMQ queue).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Optional

import sqlalchemy as sa

from nebras_bot import paths
from nebras_bot.data.records import AGENT, SOURCE_TICKETS, USER, Dialogue, Turn
from nebras_bot.learning.settings import LearningSettings
from nebras_bot.learning.store import SOURCE_EVENT, SOURCE_FEEDBACK, SOURCE_TICKET, HarvestStore, event_key, hash_text
from nebras_bot.support.feedback import FeedbackStore
from nebras_bot.support.scrub import scrub
from nebras_bot.support.tickets import ORIGIN_HANDOFF, Ticket, TicketStore

logger = logging.getLogger(__name__)

KEPT_EVENTS = ("user", "bot", "action", "slot", "active_loop")
# Intents that say something about the form, not about the problem: not useful as a ticket's topic.
FORM_INTENTS = frozenset({"inform", "affirm", "deny", "open_ticket", "contact_human_agent", "ticket_status"})
TRACKER_BATCH = 2000


@dataclass
class HarvestReport:
    tickets: int = 0
    feedback: int = 0
    tracker_events: int = 0
    broker_events: int = 0
    notes: list = field(default_factory=list)

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def ticket_dialogue(ticket: Ticket) -> Dialogue:
    """A resolved ticket as a training dialogue: the customer's problem, then the agent's answer."""
    problem = ticket.description
    if ticket.origin == ORIGIN_HANDOFF:
        users = [t["text"] for t in ticket.transcript if t.get("role") == "user"]
        problem = users[-1] if users else problem.split(":", 1)[-1].strip()
    intent = ticket.intent if ticket.intent and ticket.intent not in FORM_INTENTS else None
    entities = {"order_id": ticket.order_id} if ticket.order_id else {}
    return Dialogue(
        id=f"ticket-{ticket.id}",
        source=SOURCE_TICKETS,
        turns=[Turn(role=USER, text=problem, intent=intent, entities=entities),
               Turn(role=AGENT, text=ticket.resolution or "", generated=False)],
        slots=entities,
        meta={"ticket_id": ticket.id, "resolved_at": ticket.resolved_at.isoformat() if ticket.resolved_at else None},
    )


def harvest_tickets(store: HarvestStore, tickets: TicketStore) -> int:
    mark = store.watermark("tickets.resolved_at")
    after = datetime.fromisoformat(mark) if mark else None
    resolved = tickets.resolved_since(after)
    if not resolved:
        return 0
    rows = [(f"ticket:{t.id}:{t.resolved_at.isoformat()}", SOURCE_TICKET, t.sender_id,
             json.loads(ticket_dialogue(t).json())) for t in resolved]
    return store.add_many(rows, watermark=("tickets.resolved_at", resolved[-1].resolved_at.isoformat()))


def harvest_feedback(store: HarvestStore, feedback: FeedbackStore) -> int:
    after = int(store.watermark("feedback.id", "0"))
    items = feedback.since(after)
    if not items:
        return 0
    rows = [(f"feedback:{f.id}", SOURCE_FEEDBACK, f.sender_id,
             {"rating": f.rating, "bot_text": f.bot_text, "user_text": f.user_text, "intent": f.intent,
              "generated": f.generated, "model_version": f.model_version}) for f in items]
    return store.add_many(rows, watermark=("feedback.id", str(items[-1].id)))


def tracker_url_from_endpoints(endpoints: Path) -> Optional[str]:
    """The SQLAlchemy URL of a ``tracker_store: {type: SQL, ...}`` in endpoints.yml, or None."""
    if not endpoints.is_file():
        return None
    import yaml

    config = (yaml.safe_load(os.path.expandvars(endpoints.read_text(encoding="utf-8"))) or {}).get("tracker_store")
    if not isinstance(config, dict) or str(config.get("type", "")).lower() != "sql":
        return None
    dialect = config.get("dialect", "sqlite")
    if dialect == "sqlite":
        # Rasa opens a relative SQLite path from its working directory: the project root (home).
        database = Path(str(config.get("db", "rasa.db")))
        return f"sqlite:///{database if database.is_absolute() else paths.home() / database}"
    url = sa.engine.URL.create(dialect, username=config.get("username"), password=config.get("password"),
                               host=config.get("url"), port=config.get("port"), database=config.get("db", "rasa"))
    return str(url.render_as_string(hide_password=False))


def scrubbed_event(event: Dict[str, Any]) -> Dict[str, Any]:
    """A Rasa event with its texts PII-scrubbed (the harvest store never holds raw PII); the key
    is computed from the original event, so the tracker and broker copies still match."""
    event = dict(event)
    if isinstance(event.get("text"), str):
        event["text"] = scrub(event["text"])
    if event.get("event") == "slot" and isinstance(event.get("value"), str):  # e.g. the email slot
        event["value"] = scrub(event["value"])
    parse_data = event.get("parse_data")
    if isinstance(parse_data, dict):
        parse_data = dict(parse_data)
        if isinstance(parse_data.get("text"), str):
            parse_data["text"] = scrub(parse_data["text"])
        parse_data["entities"] = [dict(e, value=scrub(e["value"])) if isinstance(e, dict) and isinstance(e.get("value"), str)
                                  else e for e in parse_data.get("entities") or []]
        event["parse_data"] = parse_data
    return event


def harvest_tracker(store: HarvestStore, url: str) -> int:
    """Copy new rows of Rasa's ``events`` table (id above the watermark) into the harvest store."""
    engine = sa.create_engine(url, future=True)
    mark_name = f"tracker.{hash_text(url)[:12]}.id"
    events = sa.table("events", sa.column("id"), sa.column("sender_id"), sa.column("type_name"),
                      sa.column("timestamp"), sa.column("data"))
    added = 0
    try:
        while True:
            after = int(store.watermark(mark_name, "0"))
            with engine.connect() as connection:
                if not sa.inspect(connection).has_table("events"):
                    logger.info("tracker store %s has no events table yet", engine.url.render_as_string())
                    return added
                batch = connection.execute(
                    sa.select(events).where(events.c.id > after).order_by(events.c.id).limit(TRACKER_BATCH)).all()
            if not batch:
                return added
            rows = []
            for row in batch:
                if row.type_name not in KEPT_EVENTS:
                    continue
                event = json.loads(row.data) if row.data else {"event": row.type_name, "timestamp": row.timestamp}
                rows.append((event_key(row.sender_id, event), SOURCE_EVENT, row.sender_id, scrubbed_event(event)))
            added += store.add_many(rows, watermark=(mark_name, str(batch[-1].id)))
    finally:
        engine.dispose()


class BrokerUnavailable(RuntimeError):
    """The event broker (RabbitMQ) does not answer; the message names it, without the password."""


def harvest_broker(store: HarvestStore, settings: LearningSettings) -> int:
    """Drain Rasa's event queue on RabbitMQ into the harvest store (acknowledged after storing)."""
    import pika

    try:
        connection = pika.BlockingConnection(pika.URLParameters(settings.broker_url))
    except pika.exceptions.AMQPError as error:
        shown = sa.engine.make_url(settings.broker_url).render_as_string(hide_password=True)
        raise BrokerUnavailable(f"cannot reach the event broker at {shown}: {error!r}") from error
    added = 0
    try:
        channel = connection.channel()
        channel.queue_declare(queue=settings.broker_queue, durable=True)
        seen = 0
        while seen < settings.broker_max_messages:
            rows, last_tag = [], None
            for _ in range(500):
                method, _props, body = channel.basic_get(settings.broker_queue, auto_ack=False)
                if method is None:
                    break
                last_tag = method.delivery_tag
                seen += 1
                try:
                    event = json.loads(body)
                except ValueError:
                    logger.warning("skipping a broker message that is not JSON")
                    continue
                sender = str(event.get("sender_id") or "")
                if sender and event.get("event") in KEPT_EVENTS:
                    rows.append((event_key(sender, event), SOURCE_EVENT, sender, scrubbed_event(event)))
            if last_tag is None:
                break
            added += store.add_many(rows)
            channel.basic_ack(delivery_tag=last_tag, multiple=True)
    finally:
        connection.close()
    return added


def harvest(store: HarvestStore, settings: Optional[LearningSettings] = None, *, tracker_url: Optional[str] = None,
            broker: Optional[bool] = None, tickets: Optional[TicketStore] = None,
            feedback: Optional[FeedbackStore] = None) -> HarvestReport:
    settings = settings or LearningSettings()
    report = HarvestReport()
    report.tickets = harvest_tickets(store, tickets or TicketStore(store.engine))
    report.feedback = harvest_feedback(store, feedback or FeedbackStore(store.engine))
    url = tracker_url or settings.tracker_db_url or tracker_url_from_endpoints(paths.home() / settings.endpoints_file)
    if url:
        report.tracker_events = harvest_tracker(store, url)
    else:
        report.notes.append("no SQL tracker store configured (endpoints.yml or NEBRAS_LEARN_TRACKER_DB_URL)")
    if broker if broker is not None else settings.broker_enabled:
        report.broker_events = harvest_broker(store, settings)
    logger.info("harvested %s", report.as_dict())
    return report
