"""Reading Rasa tracker events (plain dicts, as rasa_sdk passes them) for the actions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional

# Keys a bot event may carry to say how its text was made (set by the NLG; see nebras_bot/nlg.py).
GENERATED_KEYS = ("generated", "nebras_generated")
MODEL_VERSION_KEYS = ("model_version", "nebras_model_version")


def transcript(events: Iterable[Dict[str, Any]]) -> List[Dict[str, str]]:
    """The user and bot messages of a conversation, oldest first."""
    turns = []
    for event in events:
        if event.get("event") == "user" and event.get("text"):
            turns.append({"role": "user", "text": str(event["text"])})
        elif event.get("event") == "bot" and event.get("text"):
            turns.append({"role": "agent", "text": str(event["text"])})
    return turns


def last_user_event(events: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    for event in reversed(events):
        if event.get("event") == "user":
            return event
    return None


@dataclass
class BotReply:
    text: str
    generated: Optional[bool]
    model_version: Optional[str]
    user_text: Optional[str]
    intent: Optional[str]


def _lookup(sources: List[Dict[str, Any]], keys: tuple) -> Any:
    for source in sources:
        for key in keys:
            if isinstance(source, dict) and source.get(key) is not None:
                return source[key]
    return None


def last_bot_reply(events: List[Dict[str, Any]], skip_after_last_user: bool = True) -> Optional[BotReply]:
    """The bot reply being rated: the last bot message before the user's latest (feedback) message.

    ``generated`` / ``model_version`` are read from the event's ``metadata``, then ``data.custom`` and
    ``data`` when the NLG put them there; None when unknown.
    """
    end = len(events)
    if skip_after_last_user:
        for index in range(len(events) - 1, -1, -1):
            if events[index].get("event") == "user":
                end = index
                break
    for index in range(end - 1, -1, -1):
        event = events[index]
        if event.get("event") != "bot" or not event.get("text"):
            continue
        data = event.get("data") or {}
        metadata = event.get("metadata") or {}
        nested = metadata.get("metadata") if isinstance(metadata.get("metadata"), dict) else {}
        sources = [metadata, nested, data.get("custom") or {}, data]
        generated = _lookup(sources, GENERATED_KEYS)
        user = last_user_event(events[:index])
        return BotReply(
            text=str(event["text"]),
            generated=bool(generated) if generated is not None else None,
            model_version=_lookup(sources, MODEL_VERSION_KEYS),
            user_text=(user or {}).get("text"),
            intent=((user or {}).get("parse_data") or {}).get("intent", {}).get("name"),
        )
    return None
