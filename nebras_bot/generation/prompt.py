"""The prompt format shared by training and serving.

A prompt is a system block (what NLU and the dialogue policy know) followed by the most recent
turns of the conversation, ending with an open agent turn::

    <|system|>
    intent: track_order
    entities: order_id={order_id}
    slots: order_id=12345
    template: Your order {order_id} is on its way.
    exemplar: I've checked the status of your order ...
    <|user|> hi there
    <|agent|> Hello! How can I help?<|end|>
    <|user|> where is my order 12345?
    <|agent|>

The model's completion is the agent's reply followed by ``<|end|>``. Training uses
:func:`build_training_pair` so that the model is conditioned exactly as at serving time.

User text is sanitised (:func:`sanitize`) so that it can never contain a role marker or start a
system line: a customer cannot forge a turn or an instruction.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Protocol, Sequence

SYSTEM = "<|system|>"
USER = "<|user|>"
AGENT = "<|agent|>"
END = "<|end|>"
ROLE_MARKERS: tuple[str, ...] = (SYSTEM, USER, AGENT, END)

ROLE_PREFIX = {"user": USER, "agent": AGENT}

# Anything that looks like a role marker, including spaced or full-width variants, e.g. "< | user | >".
_MARKER_LIKE = re.compile(r"<\s*\|[^<>]{0,40}\|\s*>")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")
_SPACES = re.compile(r"\s+")
# A system-block field name at the start of user text would read like one of ours.
_FIELD_LINE = re.compile(r"^\s*(intent|entities|slots|template|exemplar|system)\s*:", re.IGNORECASE)

TokenCounter = Callable[[str], int]


class TurnLike(Protocol):
    role: str
    text: str


@dataclass(frozen=True)
class PromptTurn:
    """A turn as the prompt builder sees it (``nebras_bot.data.records.Turn`` fits too)."""

    role: str
    text: str


@dataclass
class PromptContext:
    """Everything a reply is conditioned on. ``history`` ends with the user's latest message."""

    history: Sequence[TurnLike]
    intent: Optional[str] = None
    entities: Mapping[str, str] = field(default_factory=dict)
    slots: Mapping[str, str] = field(default_factory=dict)
    template: Optional[str] = None
    exemplars: Sequence[str] = ()
    # The Rasa output channel the reply goes to (``rest``, ``slack``, ...). Not part of the prompt
    # text (the training data has no channels); available to the generator for logging and rules.
    channel: Optional[str] = None


@dataclass
class PromptSettings:
    """Limits on what goes into a prompt. Defaults are shared by training and serving."""

    max_history_turns: int = 6
    max_prompt_tokens: int = 384
    max_exemplars: int = 2
    max_field_chars: int = 600


def sanitize(text: str) -> str:
    """Make user (or any untrusted) text safe to place inside a prompt.

    NFKC-normalises (so full-width look-alikes of ``<|`` collapse to ASCII first), removes control
    and invisible formatting characters, removes anything shaped like a role marker, collapses
    whitespace (no new lines, so no new system lines) and defuses a leading system field name.
    """
    text = unicodedata.normalize("NFKC", str(text))
    text = _CONTROL.sub(" ", text)
    previous = None
    while previous != text:  # removal can join two halves into a new marker: repeat until stable
        previous = text
        text = _MARKER_LIKE.sub(" ", text)
    text = text.replace("<|", "< |").replace("|>", "| >")
    text = _SPACES.sub(" ", text).strip()
    if _FIELD_LINE.match(text):
        text = "- " + text
    return text


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _pairs(values: Mapping[str, str]) -> str:
    return ", ".join(f"{sanitize(k)}={sanitize(v)}" for k, v in sorted(values.items()) if v not in (None, ""))


def after_exchange(context: PromptContext, user: TurnLike, reply: str, entities: Mapping[str, str]) -> PromptContext:
    """``context`` (changed in place and returned) as the reply after an earlier exchange: ``user``'s
    message and the agent's ``reply`` start the history, ``entities`` become slots (the context's own
    slots win). Training (``prior_exchange_share``) and ``nebras evaluate --prior-exchange`` share it."""
    context.history = [user, PromptTurn("agent", reply), *context.history]
    context.slots = {**entities, **context.slots}
    return context


def system_block(context: PromptContext, settings: PromptSettings, exemplars: int) -> str:
    lines = [SYSTEM]
    if context.intent:
        lines.append(f"intent: {sanitize(context.intent)}")
    if context.entities:
        lines.append(f"entities: {_pairs(context.entities)}")
    if context.slots:
        lines.append(f"slots: {_pairs(context.slots)}")
    if context.template:
        lines.append(f"template: {_clip(sanitize(context.template), settings.max_field_chars)}")
    for exemplar in list(context.exemplars)[:exemplars]:
        lines.append(f"exemplar: {_clip(sanitize(exemplar), settings.max_field_chars)}")
    return "\n".join(lines)


def format_turn(turn: TurnLike) -> str:
    """One history line; agent turns are closed with ``<|end|>`` as in training targets."""
    prefix = ROLE_PREFIX.get(turn.role)
    if prefix is None:
        raise ValueError(f"unknown role {turn.role!r}; expected 'user' or 'agent'")
    text = sanitize(turn.text)
    return f"{prefix} {text}{END}" if turn.role == "agent" else f"{prefix} {text}"


def _approximate_tokens(text: str) -> int:
    # GPT-2 BPE averages about 4 characters per token on English support text.
    return max(1, len(text) // 4)


def build_prompt(
    context: PromptContext,
    settings: Optional[PromptSettings] = None,
    count_tokens: Optional[TokenCounter] = None,
) -> str:
    """Build the prompt for the next agent turn.

    The system block always stays (exemplars are dropped first when it alone is over budget); then
    history turns are added from the most recent backwards while they fit the token budget, up to
    ``max_history_turns``. The user's latest message is always kept (clipped if it alone overflows).
    """
    settings = settings or PromptSettings()
    count = count_tokens or _approximate_tokens
    history = list(context.history)[-settings.max_history_turns :] if settings.max_history_turns > 0 else []

    exemplars = min(settings.max_exemplars, len(context.exemplars))
    header = system_block(context, settings, exemplars)
    while exemplars > 0 and count(header) > settings.max_prompt_tokens // 2:
        exemplars -= 1
        header = system_block(context, settings, exemplars)

    opener = AGENT
    budget = settings.max_prompt_tokens - count(header) - count(opener)
    kept: list[str] = []
    for position, turn in enumerate(reversed(history)):
        line = format_turn(turn)
        cost = count(line)
        if cost > budget:
            if position == 0:  # the latest message must be there, even clipped
                kept.append(_clip(line, max(16, budget * 4)))
            break
        kept.append(line)
        budget -= cost
    return "\n".join([header, *reversed(kept), opener])


def build_training_pair(
    context: PromptContext,
    reply: str,
    settings: Optional[PromptSettings] = None,
    count_tokens: Optional[TokenCounter] = None,
) -> tuple[str, str]:
    """``(prompt, completion)`` for one training example; loss goes on the completion only."""
    return build_prompt(context, settings, count_tokens), " " + sanitize(reply) + END


def contains_role_marker(text: str) -> bool:
    """True when text holds a role marker or anything shaped like one (used by the output guard)."""
    normalised = unicodedata.normalize("NFKC", text)
    return bool(_MARKER_LIKE.search(normalised)) or any(m in normalised for m in ROLE_MARKERS)


def cut_at_end(completion: str) -> str:
    """The agent reply inside a raw completion: everything before the first marker, stripped."""
    cut = len(completion)
    for marker in ROLE_MARKERS:
        index = completion.find(marker)
        if index != -1:
            cut = min(cut, index)
    return completion[:cut].strip()
