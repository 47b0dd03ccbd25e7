"""Cleaning rules: normalisation, Bitext placeholders -> slot placeholders, entity values -> slots.

Applied to every example by ``nebras data prepare`` in this order (see ``clean_exchange``):

1. :func:`normalize_text` on both texts: Unicode NFKC, typographic quotes/dashes to ASCII,
   invisible characters removed, all whitespace collapsed to single spaces (the prompt format has
   one line per turn).
2. :func:`map_bitext_placeholders` on the reply: Bitext's ``{{Order Number}}``-style holes become
   the generator's slot placeholders (``{order_id}``) when the customer gave that value; contact
   details the company would have to fill in (phone numbers, e-mail addresses, URLs, hours) become
   neutral wording ("our customer support phone line"), never an invented number; anything else
   (UI labels such as ``{{Order History}}``) keeps its words without the braces.
3. :func:`placeholder_entity_values` on the reply: an entity value that comes from the customer's
   message (``order 12345`` in both) is replaced by its placeholder (``order {order_id}``), so the
   model learns to copy through slots instead of inventing values.
4. PII scrubbing (``nebras_bot.data.pii``) on both texts; values the customer gave as entities are
   protected so that an order id is never mistaken for a phone number.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

from nebras_bot import entities as E
from nebras_bot.data import pii

_QUOTES = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'", "`": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u2026": "...",
}
_QUOTE_TABLE = str.maketrans(_QUOTES)
_INVISIBLE = re.compile(r"[\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\x00-\x08\x0b-\x1f\x7f]")
_SPACES = re.compile(r"\s+")
_BITEXT_HOLE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_SLOT = re.compile(r"\{([a-z_]+)\}")

# What a slot hole becomes when the customer did not give the value (never an invented value).
_SLOT_NEUTRAL: Dict[str, str] = {
    E.ORDER_ID: "your order",
    E.INVOICE_ID: "your invoice",
    E.REFUND_AMOUNT: "the refund amount",
    E.ACCOUNT_TYPE: "your account type",
    E.PERSON_NAME: "",
    E.DELIVERY_CITY: "your city",
    E.DELIVERY_COUNTRY: "your country",
}
# Contact details and company facts we must not make up: neutral wording.
_NEUTRAL_HOLES: Tuple[Tuple[re.Pattern, str], ...] = (
    (re.compile(r"phone|call"), "customer support phone line"),
    (re.compile(r"e-?mail"), "support email address"),
    (re.compile(r"url|website|web site|site name|website or app|website/app"), "website"),
    (re.compile(r"mobile app"), "mobile app"),
    (re.compile(r"company name|company"), "company"),
    (re.compile(r"hours|availability|start time|end time|response time"), "support hours"),
    (re.compile(r"^(number of days|refund timeframe|refund processing time( frame)?|eta|estimated time of arrival)$"),
     "the stated time"),
    (re.compile(r"date|amount|percentage|address anonymized|anonymized"), "the details on file"),
)
_ACCOUNT_WORDS = (
    r"(?:account|accounts|plan|plans|profile|version|level|tier|membership|subscription|user|users|"
    r"member|members|features|benefits|services|option|package)\b"
)
_DURING = {"available", "open", "reachable", "accessible", "operating", "operate", "hours"}
_DETERMINERS = {"our", "the", "your", "a", "an", "my", "their", "its", "this", "that"}
_PLAIN_CLEANUP = (
    (re.compile(r"\s+([,.;:!?])"), r"\1"),
    (re.compile(r",\s*,"), ","),
    (re.compile(r"\(\s*\)"), ""),
    (re.compile(r"\s{2,}"), " "),
)


def normalize_text(text: str) -> str:
    """NFKC, ASCII quotes and dashes, no invisible characters, single spaces, stripped."""
    text = unicodedata.normalize("NFKC", str(text))
    text = text.translate(_QUOTE_TABLE)
    text = _INVISIBLE.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def slot_for_hole(name: str) -> Optional[str]:
    """The slot a Bitext hole name stands for (``"Order Number"`` -> ``"order_id"``), or None."""
    return E.slot_for_name(normalize_text(name))


def neutral_for_hole(name: str) -> Optional[str]:
    """Neutral wording for a contact-detail hole (``"Website URL"`` -> ``"website"``), or None."""
    key = normalize_text(name).lower()
    for pattern, phrase in _NEUTRAL_HOLES:
        if pattern.search(key):
            return phrase
    return None


@dataclass
class CleaningStats:
    """What the rules changed, for the data card."""

    counts: Counter = field(default_factory=Counter)

    def add(self, key: str, number: int = 1) -> None:
        if number:
            self.counts[key] += number


def _tidy(text: str) -> str:
    for pattern, replacement in _PLAIN_CLEANUP:
        text = pattern.sub(replacement, text)
    return text.strip()


def map_bitext_placeholders(
    reply: str, known: Mapping[str, str], stats: Optional[CleaningStats] = None
) -> str:
    """Replace every ``{{...}}`` hole in a Bitext reply (see the module doc for the rules).

    ``known`` maps entity names to the values the customer gave (they become ``{slot}``).
    """
    stats = stats or CleaningStats()
    known_values = {normalize_text(v).lstrip("#").lower(): k for k, v in known.items() if v}

    def replace(match: re.Match) -> str:
        name = match.group(1)
        before = reply[: match.start()].split()
        previous = before[-1].lower() if before else ""
        as_value = normalize_text(name).lstrip("#").lower()
        if as_value in known_values:  # {{113542617735902}}: the customer's own value in braces
            stats.add("placeholder_slot")
            return "{" + known_values[as_value] + "}"
        slot = slot_for_hole(name)
        if slot is not None:
            if slot in known:
                stats.add("placeholder_slot")
                return "{" + slot + "}"
            stats.add("placeholder_slot_unknown_neutral")
            phrase = _SLOT_NEUTRAL[slot]
        else:
            phrase = neutral_for_hole(name)
            if phrase is None:
                stats.add("placeholder_label")
                return name  # a UI label: keep its words
            stats.add("placeholder_neutral")
        if phrase and previous not in _DETERMINERS and not phrase.startswith(("your", "the")):
            phrase = ("during our " if phrase == "support hours" and previous in _DURING else "our ") + phrase
        return phrase

    return _tidy(_BITEXT_HOLE.sub(replace, reply))


def _value_pattern(entity: str, value: str) -> Optional[re.Pattern]:
    value = normalize_text(value)
    core = value.lstrip("#")
    if not core:
        return None
    if entity == E.REFUND_AMOUNT:
        # Short numbers collide with list numbering and times: only amounts written as money.
        number = re.escape(core.lstrip("$€£"))
        return re.compile(
            rf"(?:[$€£]\s?{number}(?:\.00)?(?![\w.]\d)|(?<![\w.]){number}(?:\.00)?(?=\s?(?:dollars|usd|euros?|eur|pounds|gbp)\b))",
            re.IGNORECASE,
        )
    if entity == E.ACCOUNT_TYPE:
        # "free", "standard", "pro" are ordinary words too ("feel free to"): only as a plan name,
        # i.e. followed by an account word, or written in title case.
        word = re.escape(core)
        title = re.escape(core[:1].upper() + core[1:])
        return re.compile(
            rf"(?<![\w])(?:(?i:{word})(?=[\"']?\s+{_ACCOUNT_WORDS})|{title}(?![\w]))"
        )
    flags = 0 if any(ch.isdigit() for ch in core) else re.IGNORECASE
    return re.compile(rf"(?<![\w]){re.escape(core)}(?![\w])", flags)


def placeholder_entity_values(
    reply: str, known: Mapping[str, str], stats: Optional[CleaningStats] = None
) -> str:
    """Replace the customer's entity values in ``reply`` by ``{entity}`` placeholders.

    A leading ``#`` stays (``#{invoice_id}`` reads as it did); refund amounts only match when
    written as money (``$12``, ``12 dollars``).
    """
    stats = stats or CleaningStats()
    # Longest values first, so "Mr. Jones" is replaced before a shorter overlapping value.
    for entity, value in sorted(known.items(), key=lambda item: -len(item[1] or "")):
        if entity not in E.PLACEHOLDER_NAMES or not value:
            continue
        pattern = _value_pattern(entity, value)
        if pattern is None:
            continue
        placeholder = "{" + entity + "}"
        if entity == E.REFUND_AMOUNT:
            reply, number = pattern.subn(lambda m: ("$" if m.group(0)[:1] in "$€£" else "") + placeholder, reply)
        else:
            reply, number = pattern.subn(placeholder, reply)
        stats.add(f"entity_value_to_placeholder:{entity}", number)
    return reply


def scrub_protecting(text: str, protected: Mapping[str, str], stats: Optional[CleaningStats] = None) -> str:
    """PII-scrub ``text`` but leave the customer's known entity values as they are."""
    stats = stats or CleaningStats()
    values = sorted({v for v in protected.values() if v and v in text}, key=len, reverse=True)
    if not values:
        pieces = [text]
        separators: List[str] = []
    else:
        splitter = re.compile("(" + "|".join(re.escape(v) for v in values) + ")")
        parts = splitter.split(text)
        pieces, separators = parts[0::2], parts[1::2]
    scrubbed_pieces = []
    for piece in pieces:
        scrubbed = pii.scrub(piece)
        for kind in pii.PLACEHOLDERS:
            stats.add(f"pii:{kind}", scrubbed.count(kind) - piece.count(kind))
        scrubbed_pieces.append(scrubbed)
    out = scrubbed_pieces[0]
    for separator, piece in zip(separators, scrubbed_pieces[1:]):
        out += separator + piece
    return out


def clean_exchange(
    instruction: str,
    reply: str,
    known: Mapping[str, str],
    stats: Optional[CleaningStats] = None,
) -> Tuple[str, str]:
    """Apply all rules to one (customer message, agent reply) pair; returns the cleaned pair."""
    stats = stats or CleaningStats()
    instruction = normalize_text(instruction)
    known = {k: normalize_text(v) for k, v in known.items() if v}
    reply = normalize_text(reply)
    reply = map_bitext_placeholders(reply, known, stats)
    reply = placeholder_entity_values(reply, known, stats)
    instruction = scrub_protecting(instruction, known, stats)
    reply = scrub_protecting(reply, {}, stats)
    return instruction, reply


def unfilled_bitext_holes(text: str) -> List[str]:
    """Any ``{{...}}`` left in a text (a cleaned reply must have none)."""
    return _BITEXT_HOLE.findall(text)


def slot_placeholders(text: str) -> List[str]:
    """The ``{slot}`` placeholders in a text, in order."""
    return _SLOT.findall(text)


def fill_slots(text: str, values: Mapping[str, str]) -> str:
    """``{slot}`` placeholders replaced by their values; unknown ones are left as they are."""
    return _SLOT.sub(lambda m: str(values.get(m.group(1)) or m.group(0)), text)
