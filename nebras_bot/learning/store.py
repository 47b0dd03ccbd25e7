"""The harvest store: everything ``nebras learn`` collected, plus the watermarks of each source.

Rows are keyed so that harvesting the same thing twice (a re-run after a crash, or the same Rasa
event seen in the tracker store and on the event broker) keeps one copy.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Iterable, List, Optional, Tuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from nebras_bot.support import db

SOURCE_TICKET = "ticket"
SOURCE_FEEDBACK = "feedback"
SOURCE_EVENT = "event"  # a Rasa tracker event, from the SQL tracker store or the event broker


def event_key(sender_id: str, event: Dict[str, Any]) -> str:
    """The same Rasa event read from the tracker store or the broker gets the same key."""
    timestamp = event.get("timestamp")
    stamp = repr(float(timestamp)) if timestamp is not None else "none"
    detail = event.get("text") or event.get("name") or ""
    return f"event:{sender_id}:{event.get('event')}:{stamp}:{hash_text(str(detail))[:12]}"[:200]


def hash_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class HarvestStore:
    def __init__(self, engine: Optional[Engine] = None):
        self.engine = engine or db.connect()

    # --- watermarks -----------------------------------------------------------------------------
    def watermark(self, name: str, default: Optional[str] = None) -> Optional[str]:
        with self.engine.connect() as connection:
            value = connection.execute(sa.select(db.watermarks.c.value).where(db.watermarks.c.name == name)).scalar()
        return value if value is not None else default

    def watermarks(self) -> Dict[str, str]:
        with self.engine.connect() as connection:
            return {r.name: r.value for r in connection.execute(sa.select(db.watermarks))}

    @staticmethod
    def set_watermark(connection: Connection, name: str, value: str) -> None:
        updated = connection.execute(
            db.watermarks.update().where(db.watermarks.c.name == name).values(value=value, updated_at=db.utcnow())
        ).rowcount
        if not updated:
            connection.execute(db.watermarks.insert().values(name=name, value=value, updated_at=db.utcnow()))

    def save_watermark(self, name: str, value: str) -> None:
        with self.engine.begin() as connection:
            self.set_watermark(connection, name, value)

    # --- rows -----------------------------------------------------------------------------------
    def add_many(self, rows: Iterable[Tuple[str, str, Optional[str], Dict[str, Any]]],
                 watermark: Optional[Tuple[str, str]] = None) -> int:
        """Insert ``(key, source, sender_id, payload)`` rows not stored yet, and move a watermark,
        in one transaction. Returns how many rows were new."""
        rows = list(rows)
        inserted = 0
        with self.engine.begin() as connection:
            keys = [r[0] for r in rows]
            existing = set()
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                existing |= set(connection.execute(
                    sa.select(db.harvest.c.key).where(db.harvest.c.key.in_(chunk))).scalars())
            now = db.utcnow()
            for key, source, sender_id, payload in rows:
                if key in existing:
                    continue
                existing.add(key)
                connection.execute(db.harvest.insert().values(
                    key=key, source=source, sender_id=sender_id, payload=json.dumps(payload, ensure_ascii=False),
                    harvested_at=now))
                inserted += 1
            if watermark is not None:
                self.set_watermark(connection, *watermark)
        return inserted

    def rows(self, after_id: int = 0, source: Optional[str] = None) -> List[Dict[str, Any]]:
        query = sa.select(db.harvest).where(db.harvest.c.id > after_id).order_by(db.harvest.c.id)
        if source:
            query = query.where(db.harvest.c.source == source)
        with self.engine.connect() as connection:
            return [dict(r._mapping, payload=json.loads(r.payload)) for r in connection.execute(query)]

    def max_id(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.max(db.harvest.c.id))).scalar() or 0)
