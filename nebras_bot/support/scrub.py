"""PII scrubbing for ticket transcripts and harvested text.

Uses the data pipeline's scrubber (``nebras_bot.data.pii.scrub``), imported lazily. If that module
is not importable, a conservative regular-expression scrubber with the same placeholders is used
(and a warning logged once), so no transcript is ever stored unscrubbed.
"""
from __future__ import annotations

import logging
import re
from typing import Callable, Optional

logger = logging.getLogger(__name__)

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
_PHONE = re.compile(r"(?<![\w])\+?\(?\d{1,4}\)?(?:[ .-]?\(?\d{2,4}\)?){2,5}(?![\w])")

_scrubber: Optional[Callable[[str], str]] = None


def _fallback_scrub(text: str) -> str:
    text = _EMAIL.sub("[EMAIL]", text)
    text = _IBAN.sub("[IBAN]", text)
    text = _CARD.sub(lambda m: "[CARD]" if len(re.sub(r"\D", "", m.group())) >= 13 else m.group(), text)
    return _PHONE.sub(
        lambda m: "[PHONE]" if m.group().startswith("+") or re.search(r"[ .()-]", m.group()) else m.group(),
        text,
    )


def scrub(text: str) -> str:
    """Replace emails, phone numbers, card numbers and IBANs by typed placeholders."""
    global _scrubber
    if _scrubber is None:
        try:
            from nebras_bot.data.pii import scrub as pipeline_scrub

            _scrubber = pipeline_scrub
        except ImportError:
            logger.warning("nebras_bot.data.pii is not available; using the built-in regex scrubber")
            _scrubber = _fallback_scrub
    return _scrubber(text or "")
