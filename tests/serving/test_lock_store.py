"""AtomicRedisLockStore on this machine's Redis (marker ``services``): ticket operations from many
threads and two store instances (as two processes would) never hand out a ticket twice, and the
lock serialises a conversation's critical sections."""
from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid

import pytest

from nebras_bot.serving.lock_store import AtomicRedisLockStore

pytestmark = pytest.mark.services

REDIS_HOST = os.environ.get("NEBRAS_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("NEBRAS_TEST_REDIS_PORT", "6379"))


@pytest.fixture
def stores():
    try:
        socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=2).close()
    except OSError:
        pytest.skip(f"Redis does not answer on {REDIS_HOST}:{REDIS_PORT}")
    prefix = "t" + uuid.uuid4().hex[:8]
    pair = [AtomicRedisLockStore(host=REDIS_HOST, port=REDIS_PORT, db=1, key_prefix=prefix) for _ in range(2)]
    yield pair
    for key in pair[0].red.scan_iter(pair[0].key_prefix + "*"):
        pair[0].red.delete(key)


def test_built_from_an_endpoint_config_like_rasa_does():
    from rasa.core.lock_store import LockStore
    from rasa.utils.endpoints import EndpointConfig

    config = EndpointConfig(url=REDIS_HOST, type="nebras_bot.serving.lock_store.AtomicRedisLockStore",
                            port=REDIS_PORT, db=2, key_prefix="abc")
    store = LockStore.create(config)
    assert isinstance(store, AtomicRedisLockStore)
    kwargs = store.red.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == (REDIS_HOST, REDIS_PORT, 2)
    assert store.key_prefix.startswith("abc:")


def test_concurrent_tickets_are_unique(stores):
    conversation = "c-" + uuid.uuid4().hex[:6]
    issued = []
    guard = threading.Lock()

    def worker(store):
        for _ in range(25):
            ticket = store.issue_ticket(conversation, 60)
            with guard:
                issued.append(ticket)

    threads = [threading.Thread(target=worker, args=(stores[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(issued) == 200 and len(set(issued)) == 200
    assert len(stores[0].get_lock(conversation).tickets) == 200


def test_cleanup_keeps_tickets_issued_meanwhile_and_deletes_an_idle_lock(stores):
    conversation = "c-" + uuid.uuid4().hex[:6]
    first = stores[0].issue_ticket(conversation, 60)
    second = stores[1].issue_ticket(conversation, 60)
    stores[0].cleanup(conversation, first)
    lock = stores[1].get_lock(conversation)
    assert [t.number for t in lock.tickets] == [second]
    stores[1].cleanup(conversation, second)
    assert stores[0].get_lock(conversation) is None
    stores[0].cleanup(conversation, 99)  # no lock: nothing to do, no error


async def test_lock_serialises_a_conversation_across_store_instances(stores):
    conversation = "c-" + uuid.uuid4().hex[:6]
    inside = 0
    overlaps = 0
    order = []

    async def section(store, n):
        nonlocal inside, overlaps
        async with store.lock(conversation, lock_lifetime=30, wait_time_in_seconds=0.01):
            inside += 1
            overlaps += inside > 1
            await asyncio.sleep(0.01)
            order.append(n)
            inside -= 1

    await asyncio.gather(*(section(stores[n % 2], n) for n in range(12)))
    assert overlaps == 0 and sorted(order) == list(range(12))
    assert stores[0].get_lock(conversation) is None
