"""PII scrubbing with spaCy rule patterns: e-mails, phone numbers, card numbers and IBANs.

``scrub(text)`` replaces each with a typed placeholder (``[EMAIL]``, ``[PHONE]``, ``[CARD]``,
``[IBAN]``) and leaves everything else byte for byte as it was. It uses a blank English pipeline
(``spacy.blank("en")``: tokenizer only, no model download) and a ``Matcher``:

- e-mail: spaCy's ``LIKE_EMAIL`` token attribute;
- IBAN: a country code + 2 check digits followed by 11-30 letters/digits; compact ones only when
  the ISO 13616 mod-97 check passes, ones written in groups of four even when it fails (mistyped);
- numbers: a run of digit tokens joined by spaces, ``-``, ``.``, ``(``/``)`` or a leading ``+``;
  a run is a card when its 13-19 digits are written in groups of four, or pass the Luhn check and
  start with a card-network prefix,
  and a phone number when it has 7-15 digits and is written like one (a leading ``+``, brackets or
  separators between digit groups). Plain digit strings without separators (order ids, amounts)
  and dates are left alone.

Used by the data pipeline (nothing with PII reaches a training file), by support tickets and by
the logs.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable, List, Tuple

EMAIL = "[EMAIL]"
PHONE = "[PHONE]"
CARD = "[CARD]"
IBAN = "[IBAN]"
PLACEHOLDERS: Tuple[str, ...] = (EMAIL, PHONE, CARD, IBAN)

_LABEL_EMAIL = "EMAIL"
_LABEL_IBAN = "IBAN"
_LABEL_NUMBER = "NUMBER"

_CARD_LENGTHS = range(13, 20)
_PHONE_LENGTHS = range(7, 16)
# Card-network prefixes (IIN ranges): Visa, Mastercard, American Express, Discover, JCB, Diners, Maestro.
_CARD_PREFIX = re.compile(r"^(4|5[1-5]|2[2-7]|3[47]|6011|65|64[4-9]|35|30[0-5]|36|38|50|5[6-8]|6[37])")
_CARD_GROUPS = re.compile(r"^\d{4}([ \-]\d{4}){2,3}([ \-]\d{1,3})?$")
_CARD_INSIDE = re.compile(r"(?<![\d+])\d{4}(?:[ \-]\d{4}){3}(?![ \-]?\d)")
# Written in IBAN groups ("DE89 3704 0044 0532 ..."): scrubbed even when the checksum fails.
_IBAN_SPACED = re.compile(r"^[A-Z]{2}\d{2}( [A-Z0-9]{4}){3,7}( [A-Z0-9]{1,3})?$")
_SENTENCE_BREAK = re.compile(r"(?<=\d)[.,]\s+")
_DATE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$")
_DECIMAL = re.compile(r"^\d{1,3}(,\d{3})*(\.\d{1,2})?$|^\d+\.\d{1,2}$")

_NUMBER_FIRST = r"^(\+?\d[\d.\-]*|\()$"
_NUMBER_MIDDLE = r"^(\d[\d.\-]*|[()\-.])$"
_NUMBER_LAST = r"^(\d[\d.\-]*\d|\d)$"
_IBAN_COMPACT = r"^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$"
_IBAN_HEAD = r"^[A-Z]{2}\d{2}$"
_IBAN_GROUP = r"^[A-Z0-9]{1,4}$"

_PATTERNS = {
    _LABEL_EMAIL: [[{"LIKE_EMAIL": True}]],
    _LABEL_IBAN: [
        [{"TEXT": {"REGEX": _IBAN_COMPACT}}],
        [{"TEXT": {"REGEX": _IBAN_HEAD}}, {"TEXT": {"REGEX": _IBAN_GROUP}, "OP": "+"}],
    ],
    _LABEL_NUMBER: [
        [{"TEXT": {"REGEX": _NUMBER_LAST.replace("^(", r"^(\+?")}}],
        [
            {"TEXT": {"REGEX": _NUMBER_FIRST}},
            {"TEXT": {"REGEX": _NUMBER_MIDDLE}, "OP": "*"},
            {"TEXT": {"REGEX": _NUMBER_LAST}},
        ],
    ],
}


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum used by payment cards."""
    if not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    """ISO 13616 IBAN check: 15-34 characters, mod-97 of the rearranged number equals 1."""
    compact = re.sub(r"\s+", "", candidate).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", compact):
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(char, 36)) for char in rearranged)
    return int(number) % 97 == 1


def classify_number(text: str) -> str | None:
    """``CARD``, ``PHONE`` or None for a run of digits and separators (see the module doc)."""
    text = text.strip()
    digits = re.sub(r"\D", "", text)
    if _DATE.match(text) or _DECIMAL.match(text):
        return None
    separated = bool(re.search(r"\d[\s\-.]+\d", text))
    if len(digits) in _CARD_LENGTHS:
        if _CARD_GROUPS.match(text):  # written like a card: scrub even when mistyped
            return CARD
        if luhn_ok(digits) and _CARD_PREFIX.match(digits) and (separated or len(digits) in (15, 16)):
            return CARD
    written_as_phone = text.startswith("+") or "(" in text or separated
    if len(digits) in _PHONE_LENGTHS and written_as_phone:
        return PHONE
    return None


@lru_cache(maxsize=1)
def _pipeline():
    import spacy
    from spacy.matcher import Matcher

    nlp = spacy.blank("en")
    matcher = Matcher(nlp.vocab)
    for label, patterns in _PATTERNS.items():
        matcher.add(label, patterns)
    return nlp, matcher


def find(text: str) -> List[Tuple[int, int, str]]:
    """Character spans ``(start, end, placeholder)`` of the PII in ``text``, non-overlapping."""
    if not text:
        return []
    nlp, matcher = _pipeline()
    doc = nlp.make_doc(text)
    candidates: List[Tuple[int, int, str]] = []
    matches = [(nlp.vocab.strings[m], s, e) for m, s, e in matcher(doc)]
    # A run of digits is judged as a whole: only its longest match is classified.
    number_runs = _longest_first((s, e, _LABEL_NUMBER) for label, s, e in matches if label == _LABEL_NUMBER)
    matches = [m for m in matches if m[0] != _LABEL_NUMBER] + [(l, s, e) for s, e, l in number_runs]
    for label, start, end in matches:
        span = doc[start:end]
        if label == _LABEL_EMAIL:
            candidates.append((span.start_char, span.end_char, EMAIL))
        elif label == _LABEL_IBAN:
            if iban_ok(span.text) or _IBAN_SPACED.match(span.text):
                candidates.append((span.start_char, span.end_char, IBAN))
        else:
            # "12345. 4." is a number ending a sentence and a list item, not one run.
            offset = span.start_char
            for part in _SENTENCE_BREAK.split(span.text):
                start = text.index(part, offset)
                offset = start + len(part)
                candidates.extend(_classify_run(part, start))
    return _longest_first(candidates)


def _classify_run(run: str, start: int) -> List[Tuple[int, int, str]]:
    """Spans of the numbers in one run of digits and separators, judged as a whole first. A run
    that is no number as a whole may be two side by side ("+44 7911 123456 4111 1111 1111 1111"):
    a card written in groups inside it is taken out and the rest on each side judged again."""
    kind = classify_number(run)
    if kind:
        return [(start, start + len(run), kind)]
    card = _CARD_INSIDE.search(run)
    if not card:
        return []
    spans = [(start + card.start(), start + card.end(), CARD)]
    for piece, offset in ((run[:card.start()], 0), (run[card.end():], card.end())):
        stripped = piece.strip(" -.")
        if stripped:
            spans.extend(_classify_run(stripped, start + offset + piece.index(stripped)))
    return spans


def _longest_first(candidates: Iterable[Tuple[int, int, str]]) -> List[Tuple[int, int, str]]:
    kept: List[Tuple[int, int, str]] = []
    for start, end, kind in sorted(candidates, key=lambda c: (-(c[1] - c[0]), c[0])):
        if all(end <= s or start >= e for s, e, _ in kept):
            kept.append((start, end, kind))
    return sorted(kept)


def scrub(text: str) -> str:
    """``text`` with e-mails, phone numbers, card numbers and IBANs replaced by typed placeholders."""
    spans = find(text)
    if not spans:
        return text
    pieces: List[str] = []
    cursor = 0
    for start, end, kind in spans:
        pieces.append(text[cursor:start])
        pieces.append(kind)
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def contains_pii(text: str) -> bool:
    """True when :func:`scrub` would change ``text``."""
    return bool(find(text))
