"""Helpers shared by the actions: the support service, slot/entity lookups."""
from __future__ import annotations

from typing import Any, Optional

from rasa_sdk import Tracker

from nebras_bot.support.service import SupportService, get_service


def service() -> SupportService:
    """The support service for ``NEBRAS_DB_URL`` (schema created/migrated on first use).

    Ticket requests kept in the outbox while the action server or the database was down are filed
    here, on the first action after the outage (then at most every few seconds)."""
    support = get_service()
    support.deliver_outbox()
    return support


def slot_or_entity(tracker: Tracker, name: str) -> Optional[Any]:
    """The latest message's entity ``name`` if present, else the slot of the same name."""
    value = next(tracker.get_latest_entity_values(name), None)
    return value if value not in (None, "") else tracker.get_slot(name)


def latest_intent(tracker: Tracker) -> Optional[str]:
    return (tracker.latest_message or {}).get("intent", {}).get("name")
