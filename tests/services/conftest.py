"""Fixtures for the integration tests against this machine's real services.

- ``pg_url``: a PostgreSQL database created for this test session (unique name) on
  127.0.0.1:5432 and dropped afterwards; the test is skipped, with the reason, when PostgreSQL
  does not answer or refuses to create it.
- ``amqp_url`` / ``queue_name``: RabbitMQ on 127.0.0.1:5672 (guest/guest) and a queue name unique
  to the test, deleted afterwards; skipped, with the reason, when RabbitMQ does not answer.
- ``home``: a throw-away NEBRAS_HOME with the support database on ``pg_url`` (a fresh schema for
  every test: the tables are dropped first); ``local_home``: the same on SQLite (for the broker
  tests, which need RabbitMQ only).
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa

from helpers.services import AMQP_HOST, AMQP_PORT, PG_HOST, PG_PORT, PG_USER, answers, pg_url as pg_admin_url, scratch_pg_database  # noqa: F401

AMQP_USER, AMQP_PASSWORD = "guest", "guest"
RUN_ID = uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    with scratch_pg_database("nebras_services") as name:
        yield name


@pytest.fixture(scope="session")
def pg_url(pg_database) -> str:
    return pg_admin_url(pg_database)


@pytest.fixture
def fresh_pg(pg_url) -> str:
    """``pg_url`` with every table dropped (each test starts from an empty schema)."""
    engine = sa.create_engine(pg_url, future=True)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP SCHEMA public CASCADE"))
        connection.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    return pg_url


@pytest.fixture
def home(tmp_path, monkeypatch, fresh_pg) -> Iterator[Path]:
    from nebras_bot.support import db
    from nebras_bot.support.service import reset_services

    monkeypatch.setenv("NEBRAS_HOME", str(tmp_path))
    monkeypatch.setenv("NEBRAS_DB_URL", fresh_pg)
    monkeypatch.delenv("NEBRAS_LEARN_TRACKER_DB_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "var").mkdir()
    reset_services()
    db._ENGINES.pop(fresh_pg, None)
    yield tmp_path
    reset_services()
    engine = db._ENGINES.pop(fresh_pg, None)
    if engine is not None:
        engine.dispose()


@pytest.fixture
def local_home(tmp_path, monkeypatch) -> Iterator[Path]:
    from nebras_bot.support.service import reset_services

    monkeypatch.setenv("NEBRAS_HOME", str(tmp_path))
    monkeypatch.setenv("NEBRAS_DB_URL", f"sqlite:///{tmp_path / 'var' / 'support.db'}")
    monkeypatch.delenv("NEBRAS_LEARN_TRACKER_DB_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "var").mkdir()
    reset_services()
    yield tmp_path
    reset_services()


@pytest.fixture(scope="session")
def amqp_url() -> str:
    if not answers(AMQP_HOST, AMQP_PORT):
        pytest.skip(f"RabbitMQ does not answer on {AMQP_HOST}:{AMQP_PORT} (start it to run the broker tests)")
    return f"amqp://{AMQP_USER}:{AMQP_PASSWORD}@{AMQP_HOST}:{AMQP_PORT}/%2F"


@pytest.fixture
def queue_name(amqp_url) -> Iterator[str]:
    import pika

    name = f"nebras_test_events_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    yield name
    try:
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        connection.channel().queue_delete(queue=name)
        connection.close()
    except Exception:  # the queue may not exist; the server may have gone
        pass
