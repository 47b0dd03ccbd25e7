"""``action_feedback``: thumbs up/down on the bot's previous reply."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import service, slot_or_entity

RATING = "rating"


def _rating(tracker: Tracker) -> Optional[str]:
    value = slot_or_entity(tracker, RATING)
    if value:
        return str(value)
    text = ((tracker.latest_message or {}).get("text") or "").lower()
    if "👎" in text or "down" in text or "not helpful" in text or "unhelpful" in text:
        return "down"
    if "👍" in text or "up" in text.split() or "helpful" in text:
        return "up"
    return None


class ActionFeedback(Action):
    def name(self) -> Text:
        return "action_feedback"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> List[Dict[Text, Any]]:
        text = service().record_feedback(sender_id=tracker.sender_id, rating=_rating(tracker), events=tracker.events)
        dispatcher.utter_message(text=text)
        return [SlotSet(RATING, None)]
