"""Validation and normalisation of what customers type into forms (email, order id, description)."""
from __future__ import annotations

import re
from typing import Optional

# Pragmatic address check: one @, a dotted domain with a 2+ letter TLD, no spaces.
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,}$")
_EMAIL_IN_TEXT = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# Order numbers: 4-20 letters/digits (with at least 4 digits), optionally written "#123", "ORD-123".
_ORDER = re.compile(r"^[A-Z0-9][A-Z0-9-]{2,18}[A-Z0-9]$")
_ORDER_IN_TEXT = re.compile(r"(?<![\w@.])#?([A-Za-z]{0,4}-?\d{4,18})(?![\w@])")


def normalise_email(value: Optional[str]) -> Optional[str]:
    """A valid address (trimmed, domain lower-cased), or None."""
    if not value:
        return None
    text = str(value).strip().strip("<>.,;:").strip()
    if len(text) > 254 or not _EMAIL.match(text):
        match = _EMAIL_IN_TEXT.search(str(value))
        if not match or not _EMAIL.match(match.group()):
            return None
        text = match.group()
    local, domain = text.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


def normalise_order_id(value: Optional[str]) -> Optional[str]:
    """``#ord-12345`` -> ``ORD-12345``; ``12345`` stays; None when it cannot be an order number."""
    if value is None:
        return None
    text = str(value).strip().lstrip("#").strip().upper().replace(" ", "")
    if not _ORDER.match(text) or sum(ch.isdigit() for ch in text) < 4:
        match = _ORDER_IN_TEXT.search(str(value))
        if not match:
            return None
        text = match.group(1).upper()
        if not _ORDER.match(text):
            return None
    return text


def clean_description(value: Optional[str], min_chars: int) -> Optional[str]:
    """The description trimmed, or None when it is too short to act on."""
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text if len(text) >= min_chars else None
