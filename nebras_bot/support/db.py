"""The support database: SQLAlchemy 1.4 tables, engine creation and versioned schema migrations.

SQLite under ``var/`` by default, PostgreSQL (or any SQLAlchemy URL) via ``NEBRAS_DB_URL``.
:func:`connect` returns an engine whose schema is up to date: pending migrations from
:data:`MIGRATIONS` are applied in order and recorded in ``nebras_schema``.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from nebras_bot.support.settings import SupportSettings

logger = logging.getLogger(__name__)

metadata = sa.MetaData()

SCHEMA_TABLE = "nebras_schema"

schema_versions = sa.Table(
    SCHEMA_TABLE,
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.DateTime(), nullable=False),
)

tickets = sa.Table(
    "tickets",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("idempotency_key", sa.String(64), nullable=False, unique=True),
    sa.Column("sender_id", sa.String(255)),
    sa.Column("origin", sa.String(32), nullable=False, default="form"),
    sa.Column("email", sa.String(320)),
    sa.Column("order_id", sa.String(64)),
    sa.Column("intent", sa.String(100)),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("transcript", sa.Text, nullable=False, default="[]"),  # JSON list of {role, text}
    sa.Column("status", sa.String(16), nullable=False, default="open"),
    sa.Column("resolution", sa.Text),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
    sa.Column("resolved_at", sa.DateTime()),
)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("customer_name", sa.String(200), nullable=False),
    sa.Column("items", sa.Text, nullable=False),
    sa.Column("total_cents", sa.Integer, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("placed_at", sa.DateTime(), nullable=False),
    sa.Column("estimated_delivery", sa.Date),
    sa.Column("delivery_city", sa.String(100)),
    sa.Column("delivery_country", sa.String(100)),
    sa.Column("carrier", sa.String(50)),
    sa.Column("tracking_number", sa.String(64)),
    sa.Column("refund_status", sa.String(20)),
    sa.Column("refund_cents", sa.Integer),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sender_id", sa.String(255)),
    sa.Column("rating", sa.String(8), nullable=False),  # up | down
    sa.Column("bot_text", sa.Text, nullable=False),
    sa.Column("user_text", sa.Text),
    sa.Column("intent", sa.String(100)),
    sa.Column("generated", sa.Boolean),
    sa.Column("model_version", sa.String(100)),
    sa.Column("comment", sa.Text),  # added in schema version 3
    sa.Column("created_at", sa.DateTime(), nullable=False),
)

# Ticket requests that could not be delivered yet (action server or database down). Delivered
# exactly once: the ticket's idempotency key is the outbox row's key.
ticket_outbox = sa.Table(
    "ticket_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("idempotency_key", sa.String(64), nullable=False, unique=True),
    sa.Column("payload", sa.Text, nullable=False),  # JSON of TicketStore.create keyword arguments
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text),
    sa.Column("ticket_id", sa.String(32)),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("delivered_at", sa.DateTime()),
)

# Continuous learning: what was harvested, and how far each source has been read.
harvest = sa.Table(
    "harvest",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(200), nullable=False, unique=True),  # source-specific dedup key
    sa.Column("source", sa.String(32), nullable=False),  # tickets | conversations | broker
    sa.Column("sender_id", sa.String(255)),
    sa.Column("payload", sa.Text, nullable=False),  # JSON (an event, or a Dialogue record)
    sa.Column("harvested_at", sa.DateTime(), nullable=False),
)

watermarks = sa.Table(
    "learning_watermarks",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
)


def utcnow() -> datetime:
    """Naive UTC (stored the same way by SQLite and PostgreSQL ``timestamp`` columns)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _create_tables(names: Tuple[str, ...]) -> Callable[[Connection], None]:
    def apply(connection: Connection) -> None:
        metadata.create_all(connection, tables=[metadata.tables[n] for n in names], checkfirst=True)

    return apply


def _add_column(table: str, column: str, ddl_type: str) -> Callable[[Connection], None]:
    def apply(connection: Connection) -> None:
        if column not in {c["name"] for c in sa.inspect(connection).get_columns(table)}:
            connection.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl_type}"))

    return apply


# (version, description, apply). Append new versions; never edit an applied one.
MIGRATIONS: List[Tuple[int, str, Callable[[Connection], None]]] = [
    (1, "tickets, orders, feedback, ticket outbox", _create_tables(("tickets", "orders", "feedback", "ticket_outbox"))),
    (2, "harvest store and learning watermarks", _create_tables(("harvest", "learning_watermarks"))),
    (3, "feedback comment", _add_column("feedback", "comment", "TEXT")),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def is_connection_error(error: BaseException) -> bool:
    """True for errors worth retrying: the database went away or is not reachable (yet)."""
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        return True
    return isinstance(error, sa.exc.DisconnectionError)


def retrying(settings: Optional[SupportSettings] = None) -> Retrying:
    """A tenacity policy for database writes: exponential back-off on connection errors only."""
    settings = settings or SupportSettings()
    return Retrying(
        retry=retry_if_exception(is_connection_error),
        stop=stop_after_delay(settings.db_retry_seconds),
        wait=wait_exponential(multiplier=0.1, max=settings.db_retry_max_wait_seconds),
        reraise=True,
        before_sleep=lambda state: logger.warning(
            "database unavailable (%s), retrying (attempt %d)",
            type(state.outcome.exception()).__name__,
            state.attempt_number,
        ),
    )


def create_engine(url: str, settings: Optional[SupportSettings] = None) -> Engine:
    settings = settings or SupportSettings()
    kwargs: Dict[str, object] = {"future": True, "pool_pre_ping": True}
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    elif url.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": settings.db_connect_timeout_seconds}
    engine = sa.create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    return engine


def current_version(connection: Connection) -> int:
    if not sa.inspect(connection).has_table(SCHEMA_TABLE):
        return 0
    return int(connection.execute(sa.select(sa.func.max(schema_versions.c.version))).scalar() or 0)


def _apply(engine: Engine, version: int, description: str, apply: Callable[[Connection], None]) -> None:
    with engine.begin() as connection:
        schema_versions.create(connection, checkfirst=True)
        if current_version(connection) >= version:
            return
        apply(connection)
        connection.execute(
            schema_versions.insert().values(version=version, description=description, applied_at=utcnow())
        )
        logger.info("support database migrated to version %d (%s)", version, description)


def migrate(engine: Engine) -> int:
    """Apply pending migrations; returns the schema version. Safe to call from several processes."""
    for version, description, apply in MIGRATIONS:
        for attempt in retrying():
            with attempt:
                _apply(engine, version, description, apply)
    with engine.connect() as connection:
        return current_version(connection)


_ENGINES: Dict[str, Engine] = {}
_LOCK = threading.Lock()


def connect(url: Optional[str] = None, settings: Optional[SupportSettings] = None) -> Engine:
    """The engine for ``url`` (default: settings), migrated on first use and cached per URL."""
    settings = settings or SupportSettings()
    url = url or settings.resolved_db_url()
    with _LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = create_engine(url, settings)
            migrate(engine)
            _ENGINES[url] = engine
        return engine


def dispose_all() -> None:
    """Close every cached engine (tests, forked workers)."""
    with _LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()
