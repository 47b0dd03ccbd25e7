"""Drive a Sanic app's ASGI lifespan in this event loop (what an ASGI server does around requests).

:func:`asgi_lifespan` sends ``lifespan.startup``, waits for Sanic's answer and, on exit, sends
``lifespan.shutdown``. The lifespan task is always awaited: when the app fails while starting,
the real exception is raised at once (instead of a bare "did not start" after a timeout and an
asyncio "Task exception was never retrieved" message at interpreter exit).
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


@contextlib.asynccontextmanager
async def asgi_lifespan(app: Any, timeout_s: float = START_TIMEOUT_S) -> AsyncIterator[Any]:
    """Start ``app`` (lifespan start-up), yield it, shut it down."""
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.ensure_future(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, outbox.put))
    answer = asyncio.ensure_future(outbox.get())
    try:
        done, _ = await asyncio.wait({lifespan, answer}, timeout=timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        if answer not in done:
            if lifespan in done:
                lifespan.result()  # raises the app's start-up exception, if any
                raise AssertionError("Sanic app ended its lifespan without answering the start-up")
            raise AssertionError(f"Sanic app did not start within {timeout_s:.0f} s")
        started = answer.result()
        assert started.get("type") == "lifespan.startup.complete", f"Sanic app did not start: {started}"
    except BaseException:
        answer.cancel()
        await _finish(lifespan)
        raise
    try:
        yield app
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(outbox.get(), timeout=STOP_TIMEOUT_S)
        await _finish(lifespan)


async def _finish(task: "asyncio.Future") -> None:
    """Cancel ``task`` if still running and retrieve its outcome (no never-retrieved warnings).

    Sanic 21.12's ASGI lifespan shutdown can raise after it answered; that is not a test failure.
    """
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
