"""A Redis lock store whose ticket operations are atomic across processes.

Rasa's ``RedisLockStore`` issues a ticket by reading the conversation's lock, appending a ticket
and writing the lock back: two server processes doing that at the same moment can both receive
the same ticket number (the second write overwrites the first), so both handle a message of the
same conversation at once and one turn's events are lost in the tracker store. The scale-out test
(tests/serving/test_scale_out.py) lost a user message that way with the stock store.

``AtomicRedisLockStore`` keeps Rasa's data format and ticket algorithm but runs every
read-modify-write (issue, finish + clean up, expire) as one optimistic Redis transaction
(``WATCH``/``MULTI``/``EXEC``, retried on conflict). Use it in ``endpoints.yml``::

    lock_store:
      type: nebras_bot.serving.lock_store.AtomicRedisLockStore
      url: redis          # host
      port: 6379
      db: 1
      key_prefix: nebras
"""
from __future__ import annotations

import json
from typing import Any, Callable, Optional, Text, TypeVar

from rasa.core.lock import TicketLock
from rasa.core.constants import DEFAULT_LOCK_LIFETIME
from rasa.core.lock_store import LockError, RedisLockStore
from rasa.utils.endpoints import EndpointConfig

T = TypeVar("T")
MAX_TRANSACTION_ATTEMPTS = 200


class AtomicRedisLockStore(RedisLockStore):
    """``RedisLockStore`` with atomic ticket operations (safe with several server processes)."""

    def __init__(self, endpoint_config: Optional[EndpointConfig] = None, **kwargs: Any) -> None:
        if endpoint_config is not None:  # how Rasa builds a lock store named by its module path
            kwargs = {"host": endpoint_config.url or "localhost", **endpoint_config.kwargs, **kwargs}
        super().__init__(**kwargs)

    def _transaction(self, conversation_id: Text, change: Callable[[TicketLock], T], create: bool,
                     delete_when_idle: bool = False) -> Optional[T]:
        """Apply ``change`` to the stored lock atomically; None when there is no lock and not ``create``."""
        import redis

        key = self.key_prefix + conversation_id
        with self.red.pipeline() as pipe:
            for _ in range(MAX_TRANSACTION_ATTEMPTS):
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw:
                        lock = TicketLock.from_dict(json.loads(raw))
                    elif create:
                        lock = self.create_lock(conversation_id)
                    else:
                        pipe.unwatch()
                        return None
                    result = change(lock)
                    pipe.multi()
                    if delete_when_idle and not lock.is_someone_waiting():
                        pipe.delete(key)
                    else:
                        pipe.set(key, lock.dumps())
                    pipe.execute()
                    return result
                except redis.WatchError:  # another process changed the lock meanwhile: retry
                    continue
        raise LockError(f"could not update the lock of conversation '{conversation_id}' "
                        f"after {MAX_TRANSACTION_ATTEMPTS} attempts")

    def issue_ticket(self, conversation_id: Text, lock_lifetime: float = DEFAULT_LOCK_LIFETIME) -> int:
        ticket = self._transaction(conversation_id, lambda lock: lock.issue_ticket(lock_lifetime), create=True)
        assert ticket is not None
        return ticket

    def finish_serving(self, conversation_id: Text, ticket_number: int) -> None:
        self._transaction(conversation_id, lambda lock: lock.remove_ticket_for(ticket_number), create=False)

    def cleanup(self, conversation_id: Text, ticket_number: int) -> None:
        """Remove the ticket and, when nobody else waits, the lock: one step, so a ticket issued
        by another process in between is never deleted with it."""
        self._transaction(conversation_id, lambda lock: lock.remove_ticket_for(ticket_number), create=False,
                          delete_when_idle=True)

    def update_lock(self, conversation_id: Text) -> None:
        self._transaction(conversation_id, lambda lock: lock.remove_expired_tickets(), create=False)
