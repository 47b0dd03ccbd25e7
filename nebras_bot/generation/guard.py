"""The output guard: decides whether a generated reply may be sent.

:func:`check` returns None for a reply that may go out, or the reason it may not, written as
``rule`` or ``rule: detail`` (for example ``unknown_number: 4821``). The rules, in order:

- ``empty`` / ``too_short`` (under ``min_chars`` or no letter at all) / ``too_long`` (over ``max_chars``);
- ``role_marker``: a role marker, anything shaped like one or like half of one (``<|system>``), a
  role tag (``<user>``), or a line starting ``User:``/``Agent:``;
- ``profanity``;
- ``repetition``: a repeated sentence, a word three times in a row, a 4-word sequence more than
  ``max_repeated_ngram`` times, or very few distinct words in a long reply;
- ``placeholder_residue``: what is left of a placeholder after filling: a brace, or a snake_case
  word the conversation does not contain (``order_id``, ``orderorder_idid``), e.g. "Your
  orderorder_id} is ..." from a model kept from opening a placeholder
  (``nebras_bot.generation.constraints``);
- facts that appear nowhere in ``allowed_texts`` (the conversation, the slot and entity values and
  the templated reply): ``unknown_url``, ``unknown_email``, ``unknown_id`` (ticket, order and invoice
  ids), ``unknown_price``, ``unknown_phone``, ``unknown_number``. A model must never invent an
  order number, a price or a phone number. Not facts, and so not checked: list enumerators
  ("1. Log in ... 2. Open Orders", "1)", "(2)") at the start of the reply, of a line or right after
  sentence punctuation or a colon, counting 1, 2, 3 ... up to :data:`MAX_LIST_NUMBER` (a list may
  restart at 1), and step numbers ("Step 3", "step 2") up to the same bound
  (:func:`list_number_spans`).

The guard is a pure function; the generator logs and counts every rejection.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Iterable, Optional

from nebras_bot.generation.prompt import contains_role_marker

EMPTY = "empty"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
ROLE_MARKER = "role_marker"
PROFANITY = "profanity"
REPETITION = "repetition"
UNKNOWN_URL = "unknown_url"
UNKNOWN_EMAIL = "unknown_email"
UNKNOWN_ID = "unknown_id"
UNKNOWN_PRICE = "unknown_price"
UNKNOWN_PHONE = "unknown_phone"
UNKNOWN_NUMBER = "unknown_number"
MISSING_PLACEHOLDER = "missing_placeholder"  # decided by placeholders.fill, reported with the same format
PLACEHOLDER_RESIDUE = "placeholder_residue"

DEFAULT_MIN_CHARS = 3
DEFAULT_MAX_CHARS = 600
# A 4-word sequence may appear this often. Three, not two: the Bitext replies the model learns from
# repeat a phrase three times or more in 3.6 % of the training rows ("the early termination
# charges") and more than three times in 0.7 %; a loop repeats one far more often (docs/generation.md).
DEFAULT_MAX_REPEATED_NGRAM = 3
NGRAM = 4
LOW_DIVERSITY_MIN_WORDS = 12
LOW_DIVERSITY_RATIO = 0.35

_ROLE_LINE = re.compile(r"(?im)^\s*(user|agent|customer|assistant|system|bot)\s*:")
# Half a marker ("<|system>", "user|>") or a role tag ("<system>", "</agent>"): a model trained on
# (or an instruct model used to) marked turns writes these when it starts a new turn.
_MARKER_FRAGMENT = re.compile(
    r"<\s*\||\|\s*>|<\s*/?\s*(?:system|user|agent|assistant|customer|bot|end|im_start|im_end)\b[^<>]{0,20}>",
    re.IGNORECASE,
)
_BRACE = re.compile(r"[{}]")
_SNAKE_WORD = re.compile(r"(?<![\w@.-])[A-Za-z]+(?:\\?_[A-Za-z]+)+(?![\w@-])")  # order_id, order\_id
_LETTER = re.compile(r"[^\W\d_]")
_WORD = re.compile(r"[\w']+")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")
# A sentence end, but not the "2." of a list enumerator ("... website. 2. Navigate to the"): a reply
# cut there would end in a dangling "2." (and the guard would read it as an unknown number).
SENTENCE_END = re.compile(r"(?<!\s\d)(?<!\s\d\d)(?<!^\d)(?<!^\d\d)[.!?](?=\s|$)")

PROFANE_WORDS = (
    "fuck", "fucking", "fucked", "fucker", "motherfucker", "shit", "shitty", "bullshit", "bitch",
    "bastard", "asshole", "dick", "dickhead", "cunt", "prick", "wanker", "twat", "slut", "whore",
    "retard", "retarded", "damn", "goddamn", "crap", "piss", "pissed", "douche", "douchebag", "idiot",
    "moron", "stupid", "dumbass", "jackass", "nigger", "faggot",
)
_PROFANITY = re.compile(r"\b(" + "|".join(sorted(PROFANE_WORDS, key=len, reverse=True)) + r")s?\b", re.IGNORECASE)

# Fact patterns, most specific first; each match is masked before the next pattern runs, so the
# digits of an email or an order id are not checked again as a bare number.
_URL = re.compile(
    r"(?:https?://|www\.)[^\s<>\"']+|(?<![@\w.-])[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\.(?:com|net|org|io|co|shop|store|info|biz|app|dev)\b(?:/[^\s<>\"']*)?",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_ID = re.compile(
    r"\b(?:TCK|ORD|ORDER|INV|INVOICE|REF|RMA)[-#: ]?\s?[A-Z0-9]*\d[A-Z0-9-]*\b"  # TCK-4F2A91, ORD-1234, INV 2024-77
    r"|#\s?[A-Z0-9-]*\d[A-Z0-9-]*"  # #12345
    r"|\b(?=[A-Z0-9-]*[A-Z])(?=[A-Z0-9-]*\d)[A-Z0-9]{2,}(?:-[A-Z0-9]+)*\b",  # mixed letters+digits: A12B34
    re.IGNORECASE,
)
_PRICE = re.compile(
    r"[$€£¥]\s?\d[\d,]*(?:\.\d+)?"
    r"|\b\d[\d,]*(?:\.\d+)?\s?(?:USD|EUR|GBP|dollars?|euros?|pounds?|cents?)\b",
    re.IGNORECASE,
)
_PHONE = re.compile(r"(?<![\w.])\+?\(?\d[\d\s().-]{5,}\d(?![\w.])")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")

# List enumerators and step numbers: structure, not facts (list_number_spans).
MAX_LIST_NUMBER = 20
_LIST_NUMBER = re.compile(r"(?<![\w$€£¥#/.,:+-])\(?(\d{1,2})[.)](?=\s+[\"'“‘(]?[^\W\d_])")
_STEP_NUMBER = re.compile(r"\bstep\s+(\d{1,2})\b", re.IGNORECASE)
_CLOSERS = "\"'”’)]"


@dataclass(frozen=True)
class _Allowed:
    """What the reply may mention: normalised forms of everything in the allowed texts."""

    text: str  # lower-cased, NFKC
    alnum_tokens: frozenset  # upper-cased alphanumeric-only forms of id-like tokens
    numbers: frozenset  # canonical numbers and digit strings

    @classmethod
    def build(cls, texts: Iterable[str]) -> "_Allowed":
        normalised = [unicodedata.normalize("NFKC", str(t)) for t in texts if t]
        blob = "\n".join(normalised)
        tokens = {_alnum(m) for m in re.findall(r"[\w#-]+", blob)}
        numbers: set[str] = set()
        for match in _NUMBER.finditer(blob):
            numbers.update(_number_forms(match.group(0)))
        for match in _PHONE.finditer(blob):
            numbers.add(_digits(match.group(0)))
        for match in _ID.finditer(blob):
            tokens.add(_alnum(match.group(0)))
            if len(_digits(match.group(0))) >= 3:
                numbers.add(_digits(match.group(0)))
        return cls(text=blob.lower(), alnum_tokens=frozenset(t for t in tokens if t), numbers=frozenset(numbers))


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _alnum(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", text).upper()


def _canonical(number: str) -> Optional[str]:
    try:
        value = Decimal(number)
    except InvalidOperation:
        return None
    return format(value.normalize(), "f")


def _number_forms(text: str) -> set[str]:
    """``1,250.50`` -> {'1250.5', '125050'}; ``12345`` -> {'12345'}; ``3,5`` -> {'35', '3.5'}."""
    forms = {_digits(text)}
    for candidate in (text.replace(",", ""), text.replace(".", "").replace(",", ".")):
        canonical = _canonical(candidate)
        if canonical is not None:
            forms.add(canonical)
    return {form for form in forms if form}


def _mask(text: str, match: re.Match) -> str:
    return text[: match.start()] + " " * (match.end() - match.start()) + text[match.end():]


def _at_boundary(text: str, start: int) -> bool:
    """Whether ``start`` opens the text, a line, or follows sentence punctuation or a colon
    (possibly closed by a quote or bracket: ``Click "Orders." 2. Select ...``)."""
    before = text[:start]
    stripped = before.rstrip()
    if not stripped or "\n" in before[len(stripped):]:
        return True
    stripped = stripped.rstrip(_CLOSERS)
    return bool(stripped) and stripped[-1] in ".!?:;"


def list_number_spans(text: str) -> list[tuple[int, int]]:
    """Spans of the digits of list enumerators and step numbers in ``text``.

    An enumerator (``1.``, ``2)``, ``(3)`` followed by a word) counts only at a boundary (see
    :func:`_at_boundary`; ``(3)`` anywhere) and in sequence: ``1`` opens a list, then only the next number continues
    it, up to :data:`MAX_LIST_NUMBER`. So "Your order 4. Then" or a lone "7. Call us" is still a
    number to check. ``Step N`` (N <= :data:`MAX_LIST_NUMBER`) is a step number anywhere.
    """
    spans: list[tuple[int, int]] = []
    expected: Optional[int] = None
    for match in _LIST_NUMBER.finditer(text):
        number = int(match.group(1))
        bracketed = match.group(0).startswith("(") and match.group(0).endswith(")")  # "(2)": any position
        if number > MAX_LIST_NUMBER or not (bracketed or _at_boundary(text, match.start())):
            continue
        if number == 1 or number == expected:
            spans.append(match.span(1))
            expected = number + 1
    spans += [m.span(1) for m in _STEP_NUMBER.finditer(text) if 1 <= int(m.group(1)) <= MAX_LIST_NUMBER]
    return spans


def _repetition(reply: str, max_repeated_ngram: int) -> Optional[str]:
    found = _repetition_at(reply, max_repeated_ngram)
    return found[0] if found else None


def _repetition_at(reply: str, max_repeated_ngram: int) -> Optional[tuple[str, Optional[int]]]:
    """The repetition rule's reason and where in ``reply`` the repeated part starts (None: the whole
    reply, for too few distinct words); None when ``reply`` does not repeat itself."""
    matches = list(_WORD.finditer(reply))
    words = [m.group(0).lower() for m in matches]
    for index in range(len(words) - 2):
        if words[index] == words[index + 1] == words[index + 2]:
            return f"{REPETITION}: {words[index]!r} three times in a row", matches[index].start()
    counts: dict[tuple[str, ...], int] = {}
    for index in range(len(words) - NGRAM + 1):
        gram = tuple(words[index : index + NGRAM])
        counts[gram] = counts.get(gram, 0) + 1
        if counts[gram] > max_repeated_ngram:
            return f"{REPETITION}: {' '.join(gram)!r}", matches[index].start()
    seen: set[str] = set()
    start = 0
    for end, after in [(m.start(), m.end()) for m in _SENTENCE_SPLIT.finditer(reply)] + [(len(reply), len(reply))]:
        key = " ".join(_WORD.findall(reply[start:end].lower()))
        if len(key.split()) >= 3:
            if key in seen:
                return f"{REPETITION}: sentence repeated", start
            seen.add(key)
        start = after
    if len(words) >= LOW_DIVERSITY_MIN_WORDS and len(set(words)) / len(words) < LOW_DIVERSITY_RATIO:
        return f"{REPETITION}: few distinct words", None
    return None


def cut_repetition(reply: str, max_repeated_ngram: int = DEFAULT_MAX_REPEATED_NGRAM) -> Optional[str]:
    """``reply`` up to its last complete sentence before it starts repeating itself.

    A greedy model that loops has usually written a useful answer first ("1. ... 2. ...", then
    the same item again and again): that part is kept. None when ``reply`` does not repeat
    itself, when the repetition is the whole reply (few distinct words), or when no complete
    sentence comes before it. The result still has to pass :func:`check` (it may be too short).
    """
    text = (reply or "").strip()
    found = _repetition_at(text, max_repeated_ngram)
    if found is None:
        return None
    while found is not None:
        offset = found[1]
        if offset is None:
            return None
        text = complete_sentences(text, offset)
        if text is None:
            return None
        found = _repetition_at(text, max_repeated_ngram)
    return text


def complete_sentences(text: str, until: Optional[int] = None) -> Optional[str]:
    """``text`` up to its last :data:`SENTENCE_END` (at or before ``until``), stripped; None when
    there is none."""
    ends = [m.end() for m in SENTENCE_END.finditer(text) if until is None or m.end() <= until]
    return text[: ends[-1]].strip() if ends else None


def _unknown_fact(reply: str, allowed: _Allowed) -> Optional[str]:
    text = unicodedata.normalize("NFKC", reply)
    for start, end in list_number_spans(text):  # "Here's how to order: 1. Log in" is not an order id
        text = text[:start] + " " * (end - start) + text[end:]
    for match in list(_EMAIL.finditer(text)):
        if match.group(0).lower() not in allowed.text:
            return f"{UNKNOWN_EMAIL}: {match.group(0)}"
        text = _mask(text, match)
    for match in list(_URL.finditer(text)):
        value = match.group(0).rstrip(".,;:!?)").lower()
        if value not in allowed.text:
            return f"{UNKNOWN_URL}: {value}"
        text = _mask(text, match)
    for match in list(_ID.finditer(text)):
        value, digits = match.group(0).strip(), _digits(match.group(0))
        if _alnum(value) not in allowed.alnum_tokens and not (len(digits) >= 3 and digits in allowed.numbers):
            return f"{UNKNOWN_ID}: {value}"
        text = _mask(text, match)
    for match in list(_PRICE.finditer(text)):
        amount = _NUMBER.search(match.group(0))
        if amount is None or not (_number_forms(amount.group(0)) & allowed.numbers):
            return f"{UNKNOWN_PRICE}: {match.group(0).strip()}"
        text = _mask(text, match)
    for match in list(_PHONE.finditer(text)):
        digits = _digits(match.group(0))
        if len(digits) >= 7:
            if digits not in allowed.numbers:
                return f"{UNKNOWN_PHONE}: {match.group(0).strip()}"
            text = _mask(text, match)
    for match in _NUMBER.finditer(text):
        if not (_number_forms(match.group(0)) & allowed.numbers):
            return f"{UNKNOWN_NUMBER}: {match.group(0)}"
    return None


def check(
    reply: Optional[str],
    *,
    allowed_texts: Iterable[str] = (),
    min_chars: int = DEFAULT_MIN_CHARS,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_repeated_ngram: int = DEFAULT_MAX_REPEATED_NGRAM,
) -> Optional[str]:
    """None when ``reply`` may be sent; otherwise the reason (``rule`` or ``rule: detail``)."""
    text = (reply or "").strip()
    if not text:
        return EMPTY
    if len(text) < min_chars or not _LETTER.search(text):
        return f"{TOO_SHORT}: {len(text)} chars"
    if len(text) > max_chars:
        return f"{TOO_LONG}: {len(text)} chars"
    if contains_role_marker(text) or _ROLE_LINE.search(text) or _MARKER_FRAGMENT.search(unicodedata.normalize("NFKC", text)):
        return ROLE_MARKER
    profane = _PROFANITY.search(text)
    if profane:
        return f"{PROFANITY}: {profane.group(0).lower()}"
    repeated = _repetition(text, max_repeated_ngram)
    if repeated:
        return repeated
    allowed = _Allowed.build(allowed_texts)
    residue = _placeholder_residue(text, allowed)
    if residue:
        return f"{PLACEHOLDER_RESIDUE}: {residue}"
    return _unknown_fact(text, allowed)


def _placeholder_residue(text: str, allowed: "_Allowed") -> Optional[str]:
    """A brace, or a snake_case word (``order_id``, ``orderorder_idid``) that the conversation does
    not contain, left in a filled reply: a support reply has no identifiers of its own."""
    brace = _BRACE.search(text)
    if brace:
        return brace.group(0)
    for match in _SNAKE_WORD.finditer(text):
        if match.group(0).lower() not in allowed.text:
            return match.group(0)
    return None


def rule_of(reason: str) -> str:
    """The rule name of a reason (``unknown_number: 4821`` -> ``unknown_number``)."""
    return reason.split(":", 1)[0].strip()
