"""Rasa tracker events (harvested) -> dialogues, the NLU review list and Rasa stories.

Events are the dicts Rasa stores in its tracker store ``events.data`` column and publishes on the
event broker (``{"event": "user", "text": ..., "parse_data": {...}, "timestamp": ...}``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from nebras_bot.data.records import AGENT, SOURCE_CONVERSATIONS, USER, Dialogue, Turn
from nebras_bot.support.conversation import GENERATED_KEYS, MODEL_VERSION_KEYS
from nebras_bot.support.tickets import TICKET_ID_PATTERN

FALLBACK_INTENT = "nlu_fallback"
FALLBACK_ACTIONS = frozenset({"action_default_fallback", "action_two_stage_fallback", "utter_default"})
SKIPPED_ACTIONS = frozenset({"action_listen", "action_session_start"})


@dataclass
class Conversation:
    sender_id: str
    events: List[Dict[str, Any]] = field(default_factory=list)
    new_from: int = 0  # index of the first event harvested since the last run


def group_events(rows: Iterable[Dict[str, Any]], new_after_id: int) -> List[Conversation]:
    """Harvest rows (``payload`` = event) grouped per sender, ordered by event time."""
    by_sender: Dict[str, List[Tuple[float, int, Dict[str, Any]]]] = {}
    for row in rows:
        event = row["payload"]
        by_sender.setdefault(row["sender_id"] or "", []).append((float(event.get("timestamp") or 0), row["id"], event))
    conversations = []
    for sender, items in sorted(by_sender.items()):
        items.sort(key=lambda item: (item[0], item[1]))
        new_from = next((i for i, item in enumerate(items) if item[1] > new_after_id), len(items))
        conversations.append(Conversation(sender, [e for _, _, e in items], new_from))
    return conversations


def _intent(event: Dict[str, Any]) -> Tuple[Optional[str], Optional[float]]:
    intent = (event.get("parse_data") or {}).get("intent") or {}
    confidence = intent.get("confidence")
    return intent.get("name"), float(confidence) if confidence is not None else None


def _entities(event: Dict[str, Any]) -> Dict[str, str]:
    found = (event.get("parse_data") or {}).get("entities") or []
    return {str(e["entity"]): str(e["value"]) for e in found if e.get("entity") and e.get("value") is not None}


def _meta(event: Dict[str, Any], keys: Sequence[str]) -> Any:
    metadata = event.get("metadata") or {}
    data = event.get("data") or {}
    for source in (metadata, metadata.get("metadata") or {}, data.get("custom") or {}, data):
        if isinstance(source, dict):
            for key in keys:
                if source.get(key) is not None:
                    return source[key]
    return None


def low_confidence_messages(conversation: Conversation, threshold: float) -> List[Dict[str, Any]]:
    """New user messages the NLU was unsure about, or that ended in a fallback action."""
    found = []
    events = conversation.events
    for index in range(conversation.new_from, len(events)):
        event = events[index]
        if event.get("event") != "user" or not event.get("text") or str(event["text"]).startswith("/"):
            continue
        intent, confidence = _intent(event)
        reason = None
        if intent in (None, FALLBACK_INTENT):
            reason = "nlu_fallback"
        elif confidence is not None and confidence < threshold:
            reason = "low_confidence"
        else:
            for later in events[index + 1:]:
                if later.get("event") == "user":
                    break
                if later.get("event") == "action" and later.get("name") in FALLBACK_ACTIONS:
                    reason = "fallback_action"
                    break
        if reason:
            found.append({"text": event["text"], "intent": intent, "confidence": confidence, "reason": reason,
                          "sender_id": conversation.sender_id})
    return found


def _placeholders(text: str, known: Dict[str, str]) -> str:
    """Issued ids and the customer's entity values become ``{placeholders}`` (never learnt as text)."""
    text = TICKET_ID_PATTERN.sub("{ticket_id}", text)
    for name, value in sorted(known.items(), key=lambda kv: -len(kv[1])):
        if value and len(value) >= 3:
            text = re.sub(rf"(?<![\w]){re.escape(value)}(?![\w])", "{" + name + "}", text)
    return text


def dialogues(conversation: Conversation, *, bad_replies: set, threshold: float) -> Tuple[List[Dialogue], Dict[str, int]]:
    """Training dialogues from one conversation.

    The conversation is cut into segments at every agent reply that must not be learnt (rated
    thumbs-down, a fallback, or answering a message the NLU did not understand); only segments with
    at least one new agent reply are returned.
    """
    removed = {"thumbs_down": 0, "fallback": 0}
    segments: List[List[Turn]] = []
    current: List[Turn] = []
    has_new: List[bool] = []
    current_new = False
    known: Dict[str, str] = {}
    last_user_ok = True
    pending_action: Optional[str] = None

    def close() -> None:
        nonlocal current, current_new
        if any(t.role == AGENT for t in current):
            segments.append(current)
            has_new.append(current_new)
        current, current_new = [], False

    for index, event in enumerate(conversation.events):
        kind = event.get("event")
        if kind == "action":
            pending_action = event.get("name")
            continue
        if kind == "user" and event.get("text"):
            intent, confidence = _intent(event)
            last_user_ok = intent not in (None, FALLBACK_INTENT) and (confidence is None or confidence >= threshold)
            known.update(_entities(event))
            current.append(Turn(role=USER, text=str(event["text"]), intent=intent, entities=_entities(event)))
            pending_action = None
        elif kind == "bot" and event.get("text"):
            text = " ".join(str(event["text"]).split())
            if not current or current[-1].role != USER:
                continue  # a second bot message in a row: keep the first reply only
            drop = None
            if text in bad_replies:
                drop = "thumbs_down"
            elif not last_user_ok or pending_action in FALLBACK_ACTIONS:
                drop = "fallback"
            if drop:
                removed[drop] += index >= conversation.new_from
                current.pop()  # the unanswered user turn goes with it
                close()
                continue
            generated = _meta(event, GENERATED_KEYS)
            current.append(Turn(role=AGENT, text=_placeholders(text, known),
                                generated=bool(generated) if generated is not None else None,
                                model_version=_meta(event, MODEL_VERSION_KEYS)))
            current_new = current_new or index >= conversation.new_from
    if current and current[-1].role == USER:
        current.pop()
    close()
    result = []
    for number, (turns, new) in enumerate(zip(segments, has_new)):
        if new:
            result.append(Dialogue(id=f"conv-{conversation.sender_id}-{number}", source=SOURCE_CONVERSATIONS,
                                   turns=turns, slots={}, meta={"sender_id": conversation.sender_id}))
    return result, removed


def stories_yaml(conversations: Sequence[Conversation], limit: int = 500) -> str:
    """The new parts of harvested conversations as Rasa stories (for review in ``rasa interactive``)."""
    import yaml

    stories = []
    for conversation in conversations[:limit]:
        steps: List[Dict[str, Any]] = []
        for event in conversation.events[conversation.new_from:]:
            kind = event.get("event")
            if kind == "user":
                intent, _ = _intent(event)
                if not intent:
                    continue
                step: Dict[str, Any] = {"intent": intent, "user": str(event.get("text") or "")}
                entities = _entities(event)
                if entities:
                    step["entities"] = [{k: v} for k, v in entities.items()]
                steps.append(step)
            elif kind == "action" and event.get("name") and event["name"] not in SKIPPED_ACTIONS:
                steps.append({"action": event["name"]})
            elif kind == "active_loop":
                steps.append({"active_loop": event.get("name")})
        if any("intent" in s for s in steps) and any("action" in s for s in steps):
            stories.append({"story": f"harvested {conversation.sender_id}", "steps": steps})
    return yaml.safe_dump({"version": "3.1", "stories": stories}, sort_keys=False, allow_unicode=True)


def nlu_review_yaml(messages: Sequence[Dict[str, Any]]) -> str:
    """Rasa NLU YAML grouping unsure messages by predicted intent; a reviewer moves each example
    to its right intent and copies it into ``data/nlu/``."""
    import yaml

    by_intent: Dict[str, List[str]] = {}
    for message in messages:
        by_intent.setdefault(message.get("intent") or FALLBACK_INTENT, [])
        if message["text"] not in by_intent[message.get("intent") or FALLBACK_INTENT]:
            by_intent[message.get("intent") or FALLBACK_INTENT].append(message["text"])
    nlu = [{"intent": intent, "examples": "".join(f"- {text}\n" for text in texts)}
           for intent, texts in sorted(by_intent.items())]
    header = ("# Messages the assistant was unsure about (low NLU confidence or a fallback), grouped by the\n"
              "# intent it predicted. Move each example under its correct intent, then copy into data/nlu/.\n")

    class _Literal(str):
        pass

    class _Dumper(yaml.SafeDumper):
        pass

    _Dumper.add_representer(_Literal, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", v, style="|"))
    for item in nlu:
        item["examples"] = _Literal(item["examples"])
    return header + yaml.dump({"version": "3.1", "nlu": nlu}, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
