"""This machine's services for the integration tests (marker ``services``), in one place.

- ``PG_*``, ``REDIS_*``, ``AMQP_*``: where they are (override with ``NEBRAS_TEST_*`` variables);
- :func:`answers`: whether something listens on a host and port;
- :func:`pg_url`: a PostgreSQL URL for a database on the test server;
- :func:`scratch_pg_database`: a database made for one test (or session) and dropped afterwards;
  the test is skipped, with the reason, when PostgreSQL does not answer or cannot create it.
"""
from __future__ import annotations

import contextlib
import os
import socket
import uuid
from typing import Iterator

import pytest

PG_HOST = os.environ.get("NEBRAS_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("NEBRAS_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("NEBRAS_TEST_PG_USER", "postgres")
PG_ADMIN_DB = os.environ.get("NEBRAS_TEST_PG_DB", "test")
REDIS_HOST = os.environ.get("NEBRAS_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("NEBRAS_TEST_REDIS_PORT", "6379"))
AMQP_HOST = os.environ.get("NEBRAS_TEST_AMQP_HOST", "127.0.0.1")
AMQP_PORT = int(os.environ.get("NEBRAS_TEST_AMQP_PORT", "5672"))


def answers(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pg_url(database: str = PG_ADMIN_DB, host: str = PG_HOST, port: int = PG_PORT) -> str:
    return f"postgresql://{PG_USER}@{host}:{port}/{database}"


@contextlib.contextmanager
def scratch_pg_database(prefix: str) -> Iterator[str]:
    """Create ``<prefix>_<random>`` on the test server, yield its name, drop it afterwards."""
    import sqlalchemy as sa

    if not answers(PG_HOST, PG_PORT):
        pytest.skip(f"PostgreSQL does not answer on {PG_HOST}:{PG_PORT} (start it to run the services tests)")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_url(), isolation_level="AUTOCOMMIT", future=True)
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as error:
        admin.dispose()
        pytest.skip(f"PostgreSQL on {PG_HOST}:{PG_PORT} answers but cannot create a test database: {error}")
    try:
        yield name
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
