"""Settings of the support stage (tickets, orders, feedback storage), read from ``NEBRAS_*`` variables."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import BaseSettings, Field

from nebras_bot import paths

DEFAULT_DB_FILE = "nebras.db"


class SupportSettings(BaseSettings):
    """``NEBRAS_DB_URL`` selects the database; SQLite under ``var/`` is the embedded default."""

    db_url: Optional[str] = Field(None, description="SQLAlchemy URL, e.g. postgresql://user@host/db")
    # Ticket writes are retried on connection errors for this long (database restarts, fail-over).
    db_retry_seconds: float = 30.0
    db_retry_max_wait_seconds: float = 2.0
    db_connect_timeout_seconds: int = 5
    ticket_id_length: int = 8
    min_description_chars: int = 10
    max_transcript_turns: int = 40

    class Config:
        env_prefix = "NEBRAS_"

    def resolved_db_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{Path(paths.var_dir()) / DEFAULT_DB_FILE}"
