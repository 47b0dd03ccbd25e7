"""A loaded Rasa agent served on Rasa's REST channel over real HTTP, in this process.

Built the way ``rasa run`` builds its server (``rasa.server.create_app`` + ``RestInput`` registered
under ``/webhooks/``), run by uvicorn (Sanic apps are ASGI apps) in a background thread on a free
port. Loading the agent once and serving it in-process keeps the test fast: no second TensorFlow
start-up in a ``rasa run`` subprocess.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator
from helpers.processes import free_port

START_TIMEOUT_S = 60


@contextmanager
def serve_rest(agent: Any) -> Iterator[str]:
    """Serve ``agent``'s REST channel; yields the base URL (``http://127.0.0.1:<port>``)."""
    import httpx
    import uvicorn
    from rasa import server
    from rasa.core.channels.channel import register
    from rasa.core.channels.rest import RestInput

    app = server.create_app(agent=agent)
    register([RestInput()], app, route="/webhooks/")
    # The app registered itself as "rasa_server" (create_app's name); a second app of that name in
    # this process is allowed because tests/conftest.py runs the suite with ``Sanic.test_mode`` on.
    port = free_port()
    # ws="none": rasa pins an old websockets that uvicorn's websocket protocol cannot import (no
    # websocket routes here). log_level="critical": Sanic 21.12's ASGI lifespan shutdown raises an
    # AttributeError that uvicorn logs as an error although the server stopped cleanly.
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="on",
                            ws="none", loop="asyncio")
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, name="rasa-rest", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            if httpx.get(url + "/webhooks/rest/", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if not thread.is_alive() or time.monotonic() > deadline:
            uvicorn_server.should_exit = True
            raise RuntimeError(f"the in-process REST server did not start on {url}")
        time.sleep(0.2)
    try:
        yield url
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=15)
