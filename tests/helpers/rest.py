"""Rasa's REST channel for an in-process agent, driven over ASGI (no port, no subprocess).

:func:`rest_client` builds the Sanic app the way ``rasa run`` does (``rasa.server.create_app`` plus
``rasa.core.channels.channel.register`` with ``RestInput``), runs its ASGI lifespan start-up and
yields an ``httpx.AsyncClient`` whose requests go through Sanic's routing and the REST channel's
``/webhooks/rest/webhook`` handler in this event loop. Concurrent requests really are concurrent:
while one conversation awaits a slow generation, the loop serves the others.
"""
from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any, AsyncIterator

REST_WEBHOOK = "/webhooks/rest/webhook"


@contextlib.asynccontextmanager
async def rest_client(agent: Any) -> AsyncIterator[Any]:
    import httpx
    from rasa import server
    from rasa.core.channels.channel import register
    from rasa.core.channels.rest import RestInput

    app = server.create_app(agent=agent)
    app.config.KEEP_ALIVE = False
    register([RestInput()], app, route="/webhooks/")
    # create_app names every app "rasa_server"; Sanic needs a unique name per app in one process.
    app.name = f"rasa_rest_{uuid.uuid4().hex[:8]}"

    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, outbox.put))
    started = await asyncio.wait_for(outbox.get(), timeout=30)
    if started.get("type") != "lifespan.startup.complete":
        lifespan.cancel()
        raise RuntimeError(f"the Sanic app did not start: {started}")
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rasa.test", timeout=60) as client:
            yield client
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(outbox.get(), timeout=10)
        lifespan.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await lifespan


async def send(client: Any, sender: str, text: str) -> list:
    """One message to the REST channel; the list of bot messages it answered with."""
    response = await client.post(REST_WEBHOOK, json={"sender": sender, "message": text})
    response.raise_for_status()
    return response.json()
