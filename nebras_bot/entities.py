"""The entity / slot names Nebras knows, shared by NLU data, placeholders, the guard and data cleaning.

A generated reply may contain ``{name}`` placeholders for these; they are filled from slots and
entities after generation (see ``nebras_bot.generation.placeholders``).
"""
from __future__ import annotations

import re
from typing import Optional, Tuple

# Bitext's entity types, plus email and the ids Nebras itself issues.
ORDER_ID = "order_id"
INVOICE_ID = "invoice_id"
REFUND_AMOUNT = "refund_amount"
ACCOUNT_TYPE = "account_type"
PERSON_NAME = "person_name"
DELIVERY_CITY = "delivery_city"
DELIVERY_COUNTRY = "delivery_country"
EMAIL = "email"
TICKET_ID = "ticket_id"

ENTITIES: tuple[str, ...] = (
    ORDER_ID,
    INVOICE_ID,
    REFUND_AMOUNT,
    ACCOUNT_TYPE,
    PERSON_NAME,
    DELIVERY_CITY,
    DELIVERY_COUNTRY,
    EMAIL,
)

# Names a reply may use as ``{placeholder}``: every entity, plus the ticket id set by actions.
PLACEHOLDER_NAMES: tuple[str, ...] = ENTITIES + (TICKET_ID,)

# Other names for a slot, as lower-case words: Bitext's hole names (``{{Order Number}}``, used by
# data cleaning) and the same names as a model may write them (``{order_number}``, used when
# placeholders are filled).
_SLOT_NAMES: Tuple[Tuple[re.Pattern, str], ...] = (
    (re.compile(r"^(order|purchase)( (number|id|code|reference))?( anonymized)?$|^tracking number$"), ORDER_ID),
    (re.compile(r"^(invoice|bill)( (number|id))( anonymized)?$"), INVOICE_ID),
    (re.compile(r"^(refund|money) amount$"), REFUND_AMOUNT),
    (re.compile(r"^account (type|category)$"), ACCOUNT_TYPE),
    (re.compile(r"^(name field|client (first |last )?name|customer name|person name|name)( anonymized)?$"), PERSON_NAME),
    (re.compile(r"^delivery city$"), DELIVERY_CITY),
    (re.compile(r"^delivery country$"), DELIVERY_COUNTRY),
)


def slot_for_name(name: str) -> Optional[str]:
    """The slot a hole or placeholder name stands for (``"Order Number"``, ``"order_number"`` ->
    ``"order_id"``), or None. Underscores count as spaces; case does not matter."""
    key = " ".join(str(name).replace("_", " ").split()).lower()
    for pattern, slot in _SLOT_NAMES:
        if pattern.search(key):
            return slot
    return None
