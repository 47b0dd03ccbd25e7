"""Thumbs up / down on a bot reply, kept with the reply's text, whether it was generated, and the model."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, List, Optional

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from nebras_bot.support import db
from nebras_bot.support.scrub import scrub
from nebras_bot.support.settings import SupportSettings

UP, DOWN = "up", "down"
RATINGS = (UP, DOWN)
_SYNONYMS = {
    UP: ("up", "thumbs up", "thumbsup", "+1", "good", "helpful", "positive", "yes", "👍"),
    DOWN: ("down", "thumbs down", "thumbsdown", "-1", "bad", "unhelpful", "negative", "no", "👎"),
}


def normalise_rating(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    text = str(value).strip().lower()
    for rating, words in _SYNONYMS.items():
        if text in words:
            return rating
    return None


@dataclass
class Feedback:
    id: int
    sender_id: Optional[str]
    rating: str
    bot_text: str
    user_text: Optional[str]
    intent: Optional[str]
    generated: Optional[bool]
    model_version: Optional[str]
    created_at: datetime
    comment: Optional[str] = None

    @classmethod
    def from_row(cls, row: Any) -> "Feedback":
        return cls(**dict(row._mapping))


class FeedbackStore:
    def __init__(self, engine: Optional[Engine] = None, settings: Optional[SupportSettings] = None):
        self.settings = settings or SupportSettings()
        self.engine = engine or db.connect(settings=self.settings)

    def record(
        self,
        *,
        rating: str,
        bot_text: str,
        generated: Optional[bool] = None,
        model_version: Optional[str] = None,
        sender_id: Optional[str] = None,
        user_text: Optional[str] = None,
        intent: Optional[str] = None,
        comment: Optional[str] = None,
    ) -> Feedback:
        normalised = normalise_rating(rating)
        if normalised is None:
            raise ValueError(f"rating must be one of {RATINGS}, got {rating!r}")
        if not bot_text:
            raise ValueError("feedback needs the text of the rated reply")
        values = dict(
            sender_id=sender_id, rating=normalised, bot_text=scrub(bot_text),
            user_text=scrub(user_text) if user_text else None, intent=intent,
            generated=generated, model_version=model_version, created_at=db.utcnow(),
            comment=scrub(comment) if comment else None,
        )
        for attempt in db.retrying(self.settings):
            with attempt:
                with self.engine.begin() as connection:
                    new_id = connection.execute(db.feedback.insert().values(**values)).inserted_primary_key[0]
        return Feedback(id=int(new_id), **values)

    def add(self, *, rating: str, reply_text: str, **kwargs: Optional[object]) -> Feedback:
        """``record()`` under the names the serving API uses (``reply_text`` for the rated text)."""
        return self.record(rating=rating, bot_text=reply_text, **kwargs)  # type: ignore[arg-type]

    def since(self, after_id: int = 0) -> List[Feedback]:
        query = sa.select(db.feedback).where(db.feedback.c.id > after_id).order_by(db.feedback.c.id)
        with self.engine.connect() as connection:
            return [Feedback.from_row(r) for r in connection.execute(query)]

    def down_rated_texts(self) -> set[str]:
        """Every reply text ever rated thumbs-down (curation drops these as targets)."""
        query = sa.select(db.feedback.c.bot_text).where(db.feedback.c.rating == DOWN)
        with self.engine.connect() as connection:
            return {" ".join(t.split()) for t in connection.execute(query).scalars()}
