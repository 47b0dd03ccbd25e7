"""From a Rasa tracker to the :class:`PromptContext` the generator is conditioned on.

The history is the conversation's user and bot texts since the last session start; the intent
and entities are the latest NLU result; the slots are the filled entity slots (the facts the
customer gave earlier, e.g. an order id from turn 1, stay available in every later turn).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

from nebras_bot.entities import PLACEHOLDER_NAMES
from nebras_bot.generation.prompt import PromptContext, PromptTurn


def _scalar(value: Any) -> Optional[str]:
    if value is None or isinstance(value, (dict, bool)):
        return None
    if isinstance(value, (list, tuple)):
        value = next((item for item in reversed(value) if item not in (None, "")), None)
        return _scalar(value)
    text = str(value).strip()
    return text or None


def history_from_events(events: Iterable[Any], max_turns: Optional[int] = None) -> list[PromptTurn]:
    """User and bot texts in order, restarting at the latest ``session_started``/``restart``."""
    from rasa.shared.core.events import BotUttered, Restarted, SessionStarted, UserUttered

    turns: list[PromptTurn] = []
    for event in events:
        if isinstance(event, (SessionStarted, Restarted)):
            turns = []
        elif isinstance(event, UserUttered) and event.text:
            turns.append(PromptTurn("user", event.text))
        elif isinstance(event, BotUttered) and event.text:
            turns.append(PromptTurn("agent", event.text))
    return turns[-max_turns:] if max_turns else turns


def slot_values(slots: Mapping[str, Any], names: Iterable[str] = PLACEHOLDER_NAMES) -> dict[str, str]:
    """Filled slots among ``names`` as text (lists: their latest value)."""
    wanted = set(names)
    values = {}
    for name, value in slots.items():
        text = _scalar(value)
        if name in wanted and text is not None:
            values[name] = text
    return values


def latest_nlu(tracker: Any) -> tuple[Optional[str], dict[str, str]]:
    """``(intent name, {entity: value})`` of the tracker's latest user message."""
    message = getattr(tracker, "latest_message", None)
    if message is None:
        return None, {}
    intent = (message.intent or {}).get("name")
    entities: dict[str, str] = {}
    for entity in message.entities or []:
        name, value = entity.get("entity"), _scalar(entity.get("value"))
        if name and value is not None:
            entities[name] = value
    return intent, entities


def context_from_tracker(
    tracker: Any, template: Optional[str] = None, max_turns: Optional[int] = None, channel: Optional[str] = None
) -> PromptContext:
    """The prompt context for the next bot reply in ``tracker``'s conversation (sent to ``channel``)."""
    intent, entities = latest_nlu(tracker)
    return PromptContext(
        history=history_from_events(tracker.events, max_turns),
        intent=intent,
        entities=entities,
        slots=slot_values(tracker.current_slot_values()),
        template=template,
        channel=channel,
    )
