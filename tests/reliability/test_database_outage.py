"""PostgreSQL goes away in the middle of ticket writes: every write is retried (tenacity) until the
database is back; afterwards every ticket is stored exactly once.

The outage is made with a TCP proxy between the ticket store and the machine's PostgreSQL
(``tcp_proxy.py`` explains why the shared server itself is not stopped). Each test run uses its own
throw-away database."""
from __future__ import annotations

import concurrent.futures
import threading
import time

import logging

import pytest
import sqlalchemy as sa

from reliability.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.services, pytest.mark.timeout(180)]

from helpers.services import PG_HOST, PG_PORT, PG_USER, scratch_pg_database
WRITES = 60
OUTAGE_S = 3.0


@pytest.fixture
def scratch_database():
    with scratch_pg_database("nebras_rel") as name:
        yield name


def test_ticket_writes_survive_a_database_outage(scratch_database, caplog) -> None:
    from nebras_bot.support import db
    from nebras_bot.support.settings import SupportSettings
    from nebras_bot.support.tickets import TicketStore

    caplog.set_level(logging.WARNING, logger="nebras_bot.support.db")
    with TcpProxy((PG_HOST, PG_PORT)) as proxy:
        url = f"postgresql://{PG_USER}@127.0.0.1:{proxy.port}/{scratch_database}"
        settings = SupportSettings(db_url=url, db_retry_seconds=60, db_retry_max_wait_seconds=0.5,
                                   db_connect_timeout_seconds=2)
        engine = db.create_engine(url, settings)
        db.migrate(engine)
        store = TicketStore(engine, settings)
        started = threading.Event()
        done = []

        def write(n: int):
            if n == WRITES // 3:
                started.set()
            ticket = store.create(description=f"Broken item number {n}, please help.",
                                  idempotency_key=f"outage-{n}", email=f"c{n}@example.com", sender_id=f"s{n}")
            done.append(n)
            time.sleep(0.05)  # spread the writes over the outage
            return ticket

        with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
            futures = [pool.submit(write, n) for n in range(WRITES)]
            assert started.wait(60)
            proxy.cut()  # the database is gone: open connections reset, new ones refused
            cut_at = len(done)
            time.sleep(OUTAGE_S)
            during = len(done) - cut_at
            proxy.restore()
            tickets = [f.result(timeout=90) for f in futures]  # nothing raised: every write retried

        assert cut_at < WRITES, "the outage came after all writes; the test proves nothing"
        retries = [r for r in caplog.records if "database unavailable" in r.getMessage()]
        assert retries, "no write was retried: the outage was not seen"
        assert during <= 6, f"{during} writes completed while the database was cut"
        ids = [t.id for t in tickets]
        assert len(set(ids)) == WRITES
        with engine.connect() as connection:
            stored = connection.execute(sa.text("SELECT id, idempotency_key FROM tickets")).fetchall()
        assert len(stored) == WRITES, "a ticket was lost or duplicated"
        assert {row[0] for row in stored} == set(ids)
        assert {row[1] for row in stored} == {f"outage-{n}" for n in range(WRITES)}

        # a retried request after recovery finds its ticket instead of writing a second one
        again = store.create(description="Broken item number 0, please help.", idempotency_key="outage-0")
        assert again.id == tickets[0].id and not again.created
        assert store.count() == WRITES
        engine.dispose()
