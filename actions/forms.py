"""Form validation: ``order_form`` (order_id) and ``ticket_form`` (email, ticket_description, optional order_id)."""
from __future__ import annotations

from typing import Any, Dict, List, Text

from rasa_sdk import FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import service
from nebras_bot.support.validation import clean_description, normalise_email, normalise_order_id

ORDER_FORMAT_HELP = "Order numbers have at least 4 digits, like 370795561790. Could you check it?"


class ValidateOrderForm(FormValidationAction):
    def name(self) -> Text:
        return "validate_order_form"

    def validate_order_id(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                          domain: Dict[Text, Any]) -> Dict[Text, Any]:
        order_id = normalise_order_id(value)
        if order_id is None:
            dispatcher.utter_message(text=f"That doesn't look like an order number. {ORDER_FORMAT_HELP}")
            return {"order_id": None}
        if service().orders.get(order_id) is None:
            dispatcher.utter_message(text=f"I couldn't find an order with the number {order_id}. Could you check it?")
            return {"order_id": None}
        return {"order_id": order_id}


class ValidateTicketForm(FormValidationAction):
    def name(self) -> Text:
        return "validate_ticket_form"

    async def get_validation_events(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                    domain: Dict[Text, Any]) -> List[EventType]:
        """rasa_sdk validates required slots only; order_id is optional here, so validate it too."""
        events = await super().get_validation_events(dispatcher, tracker, domain)
        recent = tracker.slots_to_validate()
        if "order_id" in recent and "order_id" not in self.domain_slots(domain):
            result = self.validate_order_id(recent["order_id"], dispatcher, tracker, domain)
            events.extend(SlotSet(name, value) for name, value in result.items())
        return events

    def validate_email(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                       domain: Dict[Text, Any]) -> Dict[Text, Any]:
        email = normalise_email(value)
        if email is None:
            dispatcher.utter_message(text="That email address doesn't look right. Could you type it again, like name@example.com?")
        return {"email": email}

    def validate_order_id(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                          domain: Dict[Text, Any]) -> Dict[Text, Any]:
        """Optional: kept when it is a real order; otherwise dropped with a note (the form goes on)."""
        if value in (None, ""):
            return {"order_id": None}
        order_id = normalise_order_id(value)
        if order_id is None or service().orders.get(order_id) is None:
            dispatcher.utter_message(
                text=f"I couldn't find an order {order_id or value}, so I'll open the ticket without an order number.")
            return {"order_id": None}
        return {"order_id": order_id}

    def validate_ticket_description(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                    domain: Dict[Text, Any]) -> Dict[Text, Any]:
        minimum = service().settings.min_description_chars
        description = clean_description(value, minimum)
        if description is None:
            dispatcher.utter_message(text="Could you describe the problem in a sentence or two, so our team can help?")
        return {"ticket_description": description}
