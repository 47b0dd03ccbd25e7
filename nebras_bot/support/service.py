"""What the Rasa actions call: one object bundling the stores, returning the text to send.

``get_service()`` is cached per database URL, so the action server creates (and migrates) the schema
once, on its first request.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from sqlalchemy.engine import Engine

from nebras_bot.support import conversation, db, replies
from nebras_bot.support.feedback import FeedbackStore, normalise_rating
from nebras_bot.support.orders import OrderStore
from nebras_bot.support.outbox import Outbox
from nebras_bot.support.settings import SupportSettings
from nebras_bot.support.tickets import ORIGIN_FORM, ORIGIN_HANDOFF, Ticket, TicketStore, idempotency_key, normalise_ticket_id
from nebras_bot.support.validation import normalise_email, normalise_order_id

logger = logging.getLogger(__name__)


OUTBOX_DELIVERY_INTERVAL_S = 5.0


def handoff_description(events: List[Dict[str, Any]]) -> str:
    user = conversation.last_user_event(events) or {}
    description = "Customer asked for a human agent"
    if user.get("text"):
        description += f": {user['text']}"
    return description


def ticket_request(*, sender_id: str, events: List[Dict[str, Any]], description: str, email: Optional[str] = None,
                   order_id: Optional[str] = None, origin: str = ORIGIN_FORM,
                   intent: Optional[str] = None) -> Dict[str, Any]:
    """``TicketStore.create`` arguments for one form submission (or hand-off).

    The idempotency key is the sender, the origin, the timestamp of the user message that
    completed the request, and the request's content: Rasa retrying the same action call gives
    the same key, a new request (a later message) a new one. Serving builds the same request from
    the same tracker when the action server is down (``nebras_bot.serving.action_fallback``).
    """
    user = conversation.last_user_event(events) or {}
    key = idempotency_key(sender_id, origin, user.get("timestamp"), email, order_id, description)
    return dict(
        description=description, idempotency_key=key, email=normalise_email(email),
        order_id=normalise_order_id(order_id), transcript=conversation.transcript(events),
        origin=origin, sender_id=sender_id, intent=intent,
    )


@dataclass
class TicketOutcome:
    ticket: Optional[Ticket]
    text: str


class SupportService:
    def __init__(self, engine: Optional[Engine] = None, settings: Optional[SupportSettings] = None):
        self.settings = settings or SupportSettings()
        self.engine = engine or db.connect(settings=self.settings)
        self.tickets = TicketStore(self.engine, self.settings)
        self.orders = OrderStore(self.engine, self.settings)
        self.feedback = FeedbackStore(self.engine, self.settings)
        self.outbox = Outbox(self.engine, self.settings)
        self._outbox_checked = float("-inf")

    # --- orders ---------------------------------------------------------------------------------
    def order_status(self, order_id: Optional[str]) -> str:
        order = self.orders.get(order_id)
        return replies.order_status(order) if order else replies.unknown_order(order_id)

    def cancel_order(self, order_id: Optional[str]) -> str:
        outcome, order = self.orders.cancel(order_id or "")
        return replies.cancel_result(outcome, order, order_id)

    def refund_status(self, order_id: Optional[str]) -> str:
        order = self.orders.get(order_id)
        return replies.refund_status(order) if order else replies.unknown_order(order_id)

    # --- tickets --------------------------------------------------------------------------------
    def open_ticket(
        self,
        *,
        sender_id: str,
        events: List[Dict[str, Any]],
        description: str,
        email: Optional[str] = None,
        order_id: Optional[str] = None,
        origin: str = ORIGIN_FORM,
        intent: Optional[str] = None,
    ) -> TicketOutcome:
        """Create the ticket for this form submission (or hand-off) exactly once.

        The idempotency key is the sender, the origin, the timestamp of the user message that
        completed the request, and the request's content: Rasa retrying the same action call gives
        the same key, a new request (a later message) a new one.
        """
        request = ticket_request(sender_id=sender_id, events=events, description=description, email=email,
                                 order_id=order_id, origin=origin, intent=intent)
        try:
            ticket = self.tickets.create(**request)
        except Exception:  # noqa: BLE001 - the customer gets an apology; the request is kept
            logger.exception("ticket creation failed; keeping the request in the outbox")
            try:
                self.outbox.put(request)
            except Exception:  # noqa: BLE001
                logger.exception("the ticket outbox is unavailable too")
            return TicketOutcome(None, replies.handoff_failed() if origin == ORIGIN_HANDOFF else replies.ticket_failed())
        text = replies.handoff(ticket) if origin == ORIGIN_HANDOFF else replies.ticket_created(ticket)
        return TicketOutcome(ticket, text)

    def handoff(self, *, sender_id: str, events: List[Dict[str, Any]], email: Optional[str] = None,
                intent: Optional[str] = None) -> TicketOutcome:
        return self.open_ticket(sender_id=sender_id, events=events, description=handoff_description(events),
                                email=email, origin=ORIGIN_HANDOFF, intent=intent)

    def deliver_outbox(self, min_interval_s: float = OUTBOX_DELIVERY_INTERVAL_S) -> int:
        """File the ticket requests kept in the outbox (at most every ``min_interval_s`` seconds);
        returns how many were filed. Called on the action server's requests, so requests kept while
        it (or the database) was down are filed once it is back; never raises."""
        now = time.monotonic()
        if now - self._outbox_checked < min_interval_s:
            return 0
        self._outbox_checked = now
        try:
            delivered = self.outbox.deliver(self.tickets)
        except Exception:  # noqa: BLE001 - the database may still be away: next time
            logger.warning("outbox delivery failed; will retry", exc_info=True)
            return 0
        if delivered:
            logger.info("filed %d ticket request(s) kept in the outbox", len(delivered))
        return len(delivered)

    def ticket_status(self, ticket_id: Optional[str]) -> str:
        normalised = normalise_ticket_id(ticket_id or "")
        ticket = self.tickets.get(normalised) if normalised else None
        return replies.ticket_status(ticket, normalised or ticket_id)

    # --- feedback -------------------------------------------------------------------------------
    def record_feedback(self, *, sender_id: str, rating: Optional[str], events: List[Dict[str, Any]]) -> str:
        normalised = normalise_rating(rating)
        if normalised is None:
            return "Was my last answer helpful? You can say thumbs up or thumbs down."
        reply = conversation.last_bot_reply(events)
        if reply is None:
            return replies.feedback_nothing_to_rate()
        self.feedback.record(
            rating=normalised, bot_text=reply.text, generated=reply.generated, model_version=reply.model_version,
            sender_id=sender_id, user_text=reply.user_text, intent=reply.intent,
        )
        return replies.feedback_thanks(normalised)


_SERVICES: Dict[str, SupportService] = {}
_LOCK = threading.Lock()


def get_service(settings: Optional[SupportSettings] = None) -> SupportService:
    """The process-wide service for the configured database (created and migrated once)."""
    settings = settings or SupportSettings()
    url = settings.resolved_db_url()
    with _LOCK:
        if url not in _SERVICES:
            _SERVICES[url] = SupportService(db.connect(url, settings), settings)
        return _SERVICES[url]


def reset_services() -> None:
    with _LOCK:
        _SERVICES.clear()
    db.dispose_all()
