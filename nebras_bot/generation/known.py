"""Asking again: does a generated reply ask for something the conversation already holds?

Bitext replies to "how soon can I expect my package?" ask for the order number, and the model
learnt that: after "hi, my order number is 48213" it asked for the order number again
(docs/generation.md, facts from earlier turns). The customer has given it; asking again reads as
not listening. A reply that asks for the value of a slot or entity the conversation holds is
refused as ``asks_known: <slot>``; a sampled candidate (consensus reranking) or the templated
reply goes out instead.

"Asks" is read per sentence: a request ("provide", "share", "send me", "let me know", "could I have",
"I'll need", ... but not "provide you with") followed in the same sentence by the slot's noun after
"your" or "the" ("your order number", "the invoice ID"). A sentence that contains the value itself
("please keep your order number 48213 at hand") does not ask for it. Only the slots a customer is asked for are read: order id, invoice
id, email, name.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Optional

from nebras_bot.entities import EMAIL, INVOICE_ID, ORDER_ID, PERSON_NAME, slot_for_name
from nebras_bot.generation.guard import SENTENCE_END
from nebras_bot.generation.placeholders import value_text

ASKS_KNOWN = "asks_known"

_REQUEST = re.compile(
    r"\b(?:(?:provide|share|supply)(?!\s+you\b)|(?:send|give|tell) (?:me|us)|let (?:me|us) know"
    r"|(?:may|can|could) (?:i|we) (?:have|get|ask for)|(?:i|we)(?:'ll| will| would)? (?:need|require))\b",
    re.IGNORECASE,
)  # the customer is asked: "provide you with" and "send the invoice to your email" are not requests
_DETERMINER = r"\b(?:your|the)\s+(?:[\w-]+\s+){0,2}?"
# The words a request for each slot uses; a noun must follow "your" or "the" (up to two words between).
SLOT_NOUNS: Mapping[str, "re.Pattern[str]"] = {
    ORDER_ID: re.compile(_DETERMINER + r"(?:order|purchase|tracking)\s*(?:number|no\.?|id|#|reference|code)(?!\w)", re.IGNORECASE),
    INVOICE_ID: re.compile(_DETERMINER + r"(?:invoice|bill)\s*(?:number|no\.?|id|#)(?!\w)", re.IGNORECASE),
    EMAIL: re.compile(_DETERMINER + r"e-?mail(?:\s+address)?\b", re.IGNORECASE),
    PERSON_NAME: re.compile(r"\byour\s+(?:full\s+|first\s+|last\s+)?name\b", re.IGNORECASE),
}


def _known(values: Mapping[str, Any]) -> dict[str, str]:
    """Slot -> value text, for the slots of :data:`SLOT_NOUNS` with a usable value (as placeholders
    read values; other names of a slot count: ``order_number`` is ``order_id``)."""
    known: dict[str, str] = {}
    for name, value in values.items():
        text = value_text(value)
        slot = name if name in SLOT_NOUNS else slot_for_name(name)
        if text and slot in SLOT_NOUNS:
            known.setdefault(slot, text)
    return known


def asks_for_known(reply: str, values: Mapping[str, Any]) -> Optional[str]:
    """``asks_known: <slot>`` when a sentence of ``reply`` asks for a value ``values`` holds, else None."""
    known = _known(values)
    if not known or not reply:
        return None
    for sentence in (part for line in reply.splitlines() for part in SENTENCE_END.split(line)):
        request = _REQUEST.search(sentence)
        if request is None:
            continue
        after = sentence[request.start():]
        for slot, value in known.items():
            if SLOT_NOUNS[slot].search(after) and value.lower() not in sentence.lower():
                return f"{ASKS_KNOWN}: {slot}"
    return None
