"""Rasa's REST channel for an in-process agent, driven over ASGI (no port, no subprocess).

:func:`rest_client` builds the Sanic app the way ``rasa run`` does (``rasa.server.create_app`` plus
``rasa.core.channels.channel.register`` with ``RestInput``), runs its ASGI lifespan start-up and
yields an ``httpx.AsyncClient`` whose requests go through Sanic's routing and the REST channel's
``/webhooks/rest/webhook`` handler in this event loop. Concurrent requests really are concurrent:
while one conversation awaits a slow generation, the loop serves the others.
"""
from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator

REST_WEBHOOK = "/webhooks/rest/webhook"


@contextlib.asynccontextmanager
async def rest_client(agent: Any) -> AsyncIterator[Any]:
    import httpx
    from rasa import server
    from rasa.core.channels.channel import register
    from rasa.core.channels.rest import RestInput

    from .asgi import asgi_lifespan

    # create_app names every app "rasa_server": a second one in this process is only allowed
    # because tests/conftest.py runs the suite with ``Sanic.test_mode`` on.
    app = server.create_app(agent=agent)
    app.config.KEEP_ALIVE = False
    register([RestInput()], app, route="/webhooks/")

    async with asgi_lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rasa.test", timeout=60) as client:
            yield client


async def send(client: Any, sender: str, text: str) -> list:
    """One message to the REST channel; the list of bot messages it answered with."""
    response = await client.post(REST_WEBHOOK, json={"sender": sender, "message": text})
    response.raise_for_status()
    return response.json()
