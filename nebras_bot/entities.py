"""The entity / slot names Nebras knows, shared by NLU data, placeholders, the guard and data cleaning.

A generated reply may contain ``{name}`` placeholders for these; they are filled from slots and
entities after generation (see ``nebras_bot.generation.placeholders``).
"""
from __future__ import annotations

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
