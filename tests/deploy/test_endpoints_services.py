"""deploy/endpoints.docker.yml against real services (marker ``services``): with the compose host
names mapped to this machine, Rasa builds the SQL tracker store (PostgreSQL, database created
through ``login_db``), the Redis lock store and the pika event broker from the file and uses them."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid

import pytest
import sqlalchemy as sa

from .conftest import DOCKER_ENDPOINTS

pytestmark = pytest.mark.services

PG_HOST = os.environ.get("NEBRAS_TEST_PG_HOST", "127.0.0.1")
REDIS_HOST = os.environ.get("NEBRAS_TEST_REDIS_HOST", "127.0.0.1")
AMQP_HOST = os.environ.get("NEBRAS_TEST_AMQP_HOST", "127.0.0.1")
HOSTS = {"postgres": (PG_HOST, 5432), "redis": (REDIS_HOST, 6379), "rabbitmq": (AMQP_HOST, 5672)}


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def local_endpoints(tmp_path, monkeypatch):
    for service, (host, port) in HOSTS.items():
        if not _answers(host, port):
            pytest.skip(f"{service} does not answer on {host}:{port}")
    database = f"nebras_docker_ep_{uuid.uuid4().hex[:8]}"
    env = {"POSTGRES_DB": database, "POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": "",
           "RABBITMQ_DEFAULT_USER": "guest", "RABBITMQ_DEFAULT_PASS": "guest", "NEBRAS_NLG_API_TOKEN": ""}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    text = DOCKER_ENDPOINTS.read_text()
    for service, (host, _) in HOSTS.items():
        text = text.replace(f'url: "{service}"', f'url: "{host}"')
    path = tmp_path / "endpoints.yml"
    path.write_text(text)
    yield path, database
    admin = sa.create_engine(f"postgresql://postgres@{PG_HOST}:5432/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    admin.dispose()


async def test_docker_endpoints_build_working_stores(local_endpoints):
    import pika
    from rasa.core.brokers.broker import EventBroker
    from rasa.core.lock_store import LockStore
    from rasa.core.tracker_store import TrackerStore
    from rasa.core.utils import AvailableEndpoints
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    path, database = local_endpoints
    endpoints = AvailableEndpoints.read_endpoints(str(path))
    queue = f"nebras_test_{uuid.uuid4().hex[:8]}"
    endpoints.event_broker.kwargs["queues"] = [queue]  # a queue of our own on the shared broker

    broker = await EventBroker.create(endpoints.event_broker)
    assert type(broker).__name__ == "PikaEventBroker"
    store = TrackerStore.create(endpoints.tracker_store, Domain.empty(), event_broker=broker)
    assert type(store).__name__ == "SQLTrackerStore"
    sender = "docker-" + uuid.uuid4().hex[:6]
    tracker = DialogueStateTracker(sender, [])
    tracker.update(UserUttered("hello from compose", {"name": "greet", "confidence": 1.0}))
    await store.save(tracker)
    restored = await store.retrieve(sender)
    assert [e.text for e in restored.events if isinstance(e, UserUttered)] == ["hello from compose"]
    engine = sa.create_engine(f"postgresql://postgres@{PG_HOST}:5432/{database}")
    with engine.connect() as connection:  # the database was created through login_db
        assert connection.execute(sa.text("SELECT count(*) FROM events")).scalar() == 1
    engine.dispose()

    lock_store = LockStore.create(endpoints.lock_store)
    assert type(lock_store).__name__ == "AtomicRedisLockStore"
    assert lock_store.red.connection_pool.connection_kwargs["host"] == REDIS_HOST
    async with lock_store.lock(sender):
        assert lock_store.get_lock(sender) is not None
    assert lock_store.get_lock(sender) is None  # released

    # the tracker's event reached RabbitMQ
    deadline = time.monotonic() + 20
    body = None
    credentials = pika.PlainCredentials("guest", "guest")
    connection = pika.BlockingConnection(pika.ConnectionParameters(AMQP_HOST, 5672, credentials=credentials))
    try:
        channel = connection.channel()
        while body is None and time.monotonic() < deadline:
            _, _, body = channel.basic_get(queue, auto_ack=True)
            if body is None:
                await asyncio.sleep(0.2)
        channel.queue_delete(queue)
    finally:
        connection.close()
    await broker.close()
    assert body is not None, "no event arrived in RabbitMQ"
    event = json.loads(body)
    assert event["sender_id"] == sender and event["text"] == "hello from compose"
