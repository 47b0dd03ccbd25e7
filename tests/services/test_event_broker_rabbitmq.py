"""Rasa's pika event broker on the machine's RabbitMQ, configured in endpoints.yml next to the SQL
tracker store and built by Rasa itself: every event a conversation produces is published, and
``nebras learn``'s consumer drains the queue into the harvest store (acknowledging only what it
stored), keeping one copy of events it also read from the tracker store."""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import yaml

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]


def queue_depth(amqp_url: str, queue: str) -> int:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        return connection.channel().queue_declare(queue=queue, passive=True).method.message_count
    finally:
        connection.close()


async def wait_for_depth(amqp_url: str, queue: str, expected: int, timeout: float = 60.0) -> int:
    """Waits on the event loop, where Rasa's broker publishes in background tasks."""
    deadline, depth = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        depth = queue_depth(amqp_url, queue)
        if depth >= expected:
            return depth
        await asyncio.sleep(0.2)
    return depth


async def test_rasa_pika_broker_events_are_consumed_into_the_harvest_store(local_home, amqp_url, queue_name):
    import pika
    from rasa.core.brokers.broker import EventBroker
    from rasa.core.tracker_store import TrackerStore
    from rasa.core.utils import AvailableEndpoints
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    from nebras_bot.learning.harvest import harvest, harvest_broker
    from nebras_bot.learning.settings import LearningSettings
    from nebras_bot.learning.store import SOURCE_EVENT, HarvestStore
    from services.conftest import AMQP_HOST, AMQP_PASSWORD, AMQP_PORT, AMQP_USER

    exchange = f"nebras-test-{uuid.uuid4().hex[:8]}"  # Rasa's default exchange is shared by every run
    (local_home / "endpoints.yml").write_text(yaml.safe_dump({
        "tracker_store": {"type": "SQL", "dialect": "sqlite", "db": "var/tracker.db"},
        "event_broker": {"type": "pika", "url": AMQP_HOST, "port": AMQP_PORT, "username": AMQP_USER,
                         "password": AMQP_PASSWORD, "queues": [queue_name], "exchange_name": exchange,
                         "raise_on_failure": True},
    }))
    endpoints = AvailableEndpoints.read_endpoints(str(local_home / "endpoints.yml"))
    broker = await EventBroker.create(endpoints.event_broker)
    assert type(broker).__name__ == "PikaEventBroker"
    try:
        tracker_store = TrackerStore.create(endpoints.tracker_store, Domain.empty(), broker)
        tracker = DialogueStateTracker.from_events("mq-user", [
            UserUttered("can I change my delivery address?", {"name": "change_shipping_address", "confidence": 0.9},
                        timestamp=1.0),
            ActionExecuted("utter_change_shipping_address", timestamp=2.0),
            BotUttered("Yes, until the order ships: open it in your account.", timestamp=3.0),
        ])
        await tracker_store.save(tracker)  # Rasa streams the new events to the broker
        assert await wait_for_depth(amqp_url, queue_name, 3) == 3
    finally:
        await broker.close()
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    connection.channel().basic_publish("", queue_name, b"not json at all")
    connection.close()

    settings = LearningSettings(broker_url=amqp_url, broker_queue=queue_name)
    store = HarvestStore()
    assert harvest_broker(store, settings) == 3  # the malformed message is skipped (and acknowledged)
    assert queue_depth(amqp_url, queue_name) == 0
    rows = store.rows(source=SOURCE_EVENT)
    assert [r["payload"]["event"] for r in rows] == ["user", "action", "bot"]
    assert rows[0]["payload"]["text"] == "can I change my delivery address?" and rows[0]["sender_id"] == "mq-user"

    # the same events read again from the SQL tracker store are not stored twice
    report = harvest(store, settings, broker=True)
    assert report.tracker_events == 0 and report.broker_events == 0 and len(store.rows(source=SOURCE_EVENT)) == 3

    pika_connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    pika_connection.channel().exchange_delete(exchange=exchange)
    pika_connection.close()


def test_broker_that_does_not_answer_is_a_clear_error(local_home):
    from nebras_bot.learning.harvest import BrokerUnavailable, harvest_broker
    from nebras_bot.learning.settings import LearningSettings
    from nebras_bot.learning.store import HarvestStore
    from services.conftest import answers

    port = 1
    while answers("127.0.0.1", port):
        port += 1
    settings = LearningSettings(broker_url=f"amqp://guest:guest@127.0.0.1:{port}/%2F", broker_queue="nebras_none")
    with pytest.raises(BrokerUnavailable, match=f"cannot reach the event broker at amqp://guest:\\*\\*\\*@127.0.0.1:{port}"):
        harvest_broker(HarvestStore(), settings)
