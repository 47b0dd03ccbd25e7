"""Order actions: status, cancellation and refund status, looked up in the ``orders`` table."""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import service, slot_or_entity
from nebras_bot.entities import ORDER_ID
from nebras_bot.support.validation import normalise_order_id


class _OrderAction(Action, metaclass=ABCMeta):
    # Abstract (rasa_sdk registers every concrete Action subclass; this base has no name).
    @abstractmethod
    def answer(self, order_id: str) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> List[Dict[Text, Any]]:
        raw = slot_or_entity(tracker, ORDER_ID)
        order_id = normalise_order_id(raw) or (str(raw) if raw else None)
        dispatcher.utter_message(text=self.answer(order_id))
        return [SlotSet(ORDER_ID, order_id)] if order_id and order_id != tracker.get_slot(ORDER_ID) else []


class ActionOrderStatus(_OrderAction):
    def name(self) -> Text:
        return "action_order_status"

    def answer(self, order_id: str) -> str:
        return service().order_status(order_id)


class ActionCancelOrder(_OrderAction):
    def name(self) -> Text:
        return "action_cancel_order"

    def answer(self, order_id: str) -> str:
        return service().cancel_order(order_id)


class ActionRefundStatus(_OrderAction):
    def name(self) -> Text:
        return "action_refund_status"

    def answer(self, order_id: str) -> str:
        return service().refund_status(order_id)
