"""Ticket actions: create (after ``ticket_form``), status lookup, and the human hand-off."""
from __future__ import annotations

from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ConversationPaused, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import latest_intent, service, slot_or_entity
from nebras_bot.entities import EMAIL, ORDER_ID, TICKET_ID

TICKET_DESCRIPTION = "ticket_description"


class ActionCreateTicket(Action):
    def name(self) -> Text:
        return "action_create_ticket"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> List[Dict[Text, Any]]:
        description = tracker.get_slot(TICKET_DESCRIPTION)
        if not description:
            dispatcher.utter_message(text="I need a short description of the problem to open a ticket.")
            return []
        outcome = service().open_ticket(
            sender_id=tracker.sender_id, events=tracker.events, description=description,
            email=tracker.get_slot(EMAIL), order_id=tracker.get_slot(ORDER_ID), intent=latest_intent(tracker),
        )
        dispatcher.utter_message(text=outcome.text)
        events: List[Dict[Text, Any]] = [SlotSet(TICKET_DESCRIPTION, None)]
        if outcome.ticket is not None:
            events.append(SlotSet(TICKET_ID, outcome.ticket.id))
        return events


class ActionTicketStatus(Action):
    def name(self) -> Text:
        return "action_ticket_status"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> List[Dict[Text, Any]]:
        ticket_id = slot_or_entity(tracker, TICKET_ID) or (tracker.latest_message or {}).get("text")
        dispatcher.utter_message(text=service().ticket_status(ticket_id))
        return []


class ActionHandoff(Action):
    def name(self) -> Text:
        return "action_handoff"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> List[Dict[Text, Any]]:
        outcome = service().handoff(sender_id=tracker.sender_id, events=tracker.events,
                                    email=tracker.get_slot(EMAIL), intent=latest_intent(tracker))
        dispatcher.utter_message(text=outcome.text)
        events: List[Dict[Text, Any]] = [ConversationPaused()]
        if outcome.ticket is not None:
            events.insert(0, SlotSet(TICKET_ID, outcome.ticket.id))
        return events
