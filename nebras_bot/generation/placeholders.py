"""Slot placeholders in generated replies.

The model is trained to write ``{order_id}`` instead of inventing an order number; after
generation the placeholders are filled from the slots and entities of the conversation. A
placeholder with no value makes the whole reply unusable (:func:`fill` returns None), because a
reply with a hole in it, or a guessed value, must never reach a customer.

A placeholder may use another name of a slot (``{order_number}`` for ``order_id``,
``{invoice_number}`` for ``invoice_id``: ``nebras_bot.entities.slot_for_name``, the table data
cleaning maps Bitext's ``{{Order Number}}`` holes with); a partly trained model writes those, and
they are filled from the slot. A name that is no slot's (``{account_name}``) still needs a value of
its own.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Optional

from nebras_bot.entities import slot_for_name

# ``{order_id}``, ``{ order_id }``, and ``{order\_id}`` with a Markdown-escaped underscore (the
# trained models write it: docs/generation.md); not JSON-ish ``{"a": 1}``.
PLACEHOLDER = re.compile(r"\{\s*([A-Za-z_](?:\\?[A-Za-z0-9_]){0,40})\s*\}")


def name_of(match: "re.Match[str]") -> str:
    r"""The placeholder name of a :data:`PLACEHOLDER` match, escapes removed (``order\_id`` -> ``order_id``)."""
    return match.group(1).replace("\\", "")


def placeholders_in(text: str) -> list[str]:
    """Placeholder names in order of appearance (duplicates kept)."""
    return [name_of(match) for match in PLACEHOLDER.finditer(text)]


def value_text(value: Any) -> Optional[str]:
    if value is None or isinstance(value, (dict, bool)):
        return None
    if isinstance(value, (list, tuple)):
        parts = [value_text(item) for item in value]
        parts = [part for part in parts if part]
        return ", ".join(parts) if parts else None
    text = str(value).strip()
    return text or None


def value_for(name: str, values: Mapping[str, Any]) -> Optional[str]:
    """The text for placeholder ``name``: its own value, else the value of the slot it names."""
    text = value_text(values.get(name))
    if text is None:
        slot = slot_for_name(name)
        if slot is not None and slot != name:
            text = value_text(values.get(slot))
    return text


def unfilled(text: str, values: Mapping[str, Any]) -> Iterable["re.Match[str]"]:
    """The :data:`PLACEHOLDER` matches of ``text`` without a usable value, in order."""
    return (match for match in PLACEHOLDER.finditer(text) if value_for(name_of(match), values) is None)


def missing(text: str, values: Mapping[str, Any]) -> list[str]:
    """Names of placeholders in ``text`` without a usable value."""
    return [name_of(match) for match in unfilled(text, values)]


def fill(text: str, values: Mapping[str, Any]) -> Optional[str]:
    """Replace every ``{name}`` with its value; None when any placeholder has no value.

    Values are inserted literally (they are never re-scanned, so a value containing ``{x}`` is not
    filled again). Lists become comma-separated text; None, empty strings, dicts and booleans count
    as no value.
    """
    if missing(text, values):
        return None
    return PLACEHOLDER.sub(lambda match: value_for(name_of(match), values) or "", text)


def merge_values(*sources: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """Later sources win, but only with a usable value (an empty slot never hides an entity)."""
    merged: dict[str, Any] = {}
    for source in sources:
        for key, value in (source or {}).items():
            if value_text(value) is not None:
                merged[key] = value
    return merged


def value_texts(values: Mapping[str, Any]) -> Iterable[str]:
    """The text form of every usable value (what the output guard may see in a reply)."""
    for value in values.values():
        text = value_text(value)
        if text is not None:
            yield text
