"""The one record type every data source is turned into: a dialogue of ordered turns.

Bitext rows become one-exchange dialogues, Rasa stories become multi-turn dialogues, and logged
support conversations and tickets (the continuous-learning loop) are stored as JSON Lines of
``Dialogue`` objects (``Dialogue.json()`` per line) in exactly this format.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Iterator, List, Literal, Optional

from pydantic import BaseModel, Field, validator

USER = "user"
AGENT = "agent"
Role = Literal["user", "agent"]

# Where a dialogue came from; the data card counts rows per source.
SOURCE_BITEXT = "bitext"
SOURCE_STORIES = "rasa_stories"
SOURCE_DOMAIN = "rasa_domain"  # NLU examples paired with the domain's utter_<intent> reply
SOURCE_RULES = "rasa_rules"  # NLU examples paired with the generated response a rule sends (out of scope)
SOURCE_TICKETS = "tickets"
SOURCE_CONVERSATIONS = "conversations"
SOURCES = (SOURCE_BITEXT, SOURCE_STORIES, SOURCE_DOMAIN, SOURCE_RULES, SOURCE_TICKETS, SOURCE_CONVERSATIONS)


class Turn(BaseModel):
    """One message. ``intent``/``entities`` are set on user turns when known."""

    role: Role
    text: str
    intent: Optional[str] = None
    entities: Dict[str, str] = Field(default_factory=dict)
    # For agent turns: whether the text was generated, and which model version wrote it.
    generated: Optional[bool] = None
    model_version: Optional[str] = None

    @validator("text")
    def _text_is_str(cls, value: str) -> str:  # noqa: N805 - pydantic validator signature
        if not isinstance(value, str):
            raise TypeError("turn text must be a string")
        return value


class Dialogue(BaseModel):
    """An ordered conversation between a customer (``user``) and the support agent (``agent``)."""

    id: str
    source: str
    turns: List[Turn]
    slots: Dict[str, str] = Field(default_factory=dict)
    meta: Dict[str, Any] = Field(default_factory=dict)

    @validator("source")
    def _known_source(cls, value: str) -> str:  # noqa: N805
        if value not in SOURCES:
            raise ValueError(f"unknown source {value!r}; expected one of {SOURCES}")
        return value

    def exchanges(self) -> Iterator[tuple[List[Turn], Turn]]:
        """Yield ``(history, agent_turn)`` for every agent turn that follows a user turn.

        ``history`` holds the turns before the agent reply (ending with the user's message); these
        are the training examples: the prompt is built from ``history``, the target is the reply.
        """
        for index, turn in enumerate(self.turns):
            if turn.role == AGENT and index > 0 and self.turns[index - 1].role == USER:
                yield self.turns[:index], turn


def read_jsonl(lines: Iterable[str]) -> Iterator[Dialogue]:
    """Parse JSON Lines of dialogues, skipping blank lines."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield Dialogue.parse_raw(line)
        except ValueError as error:
            raise ValueError(f"line {number}: not a valid dialogue record: {error}") from error
