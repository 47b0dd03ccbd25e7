"""The FastAPI application of ``nebras serve``: ``create_app(settings, agent=None)``.

Pass ``agent`` to serve an already loaded Rasa agent (tests, benchmarks); without it the model
named by the settings is loaded in the background at start-up, and ``/readyz`` answers 503 until
it is ready.
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any, Optional

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.staticfiles import StaticFiles

from nebras_bot import __version__
from nebras_bot.monitoring import metrics
from nebras_bot.serving.agent import AgentHolder, current_nlg_version, default_model_version, model_id
from nebras_bot.serving.middleware import ObservabilityMiddleware
from nebras_bot.serving.routes import chat, feedback, health, tickets, web
from nebras_bot.serving.security import BodySizeLimitMiddleware, RateLimiter
from nebras_bot.serving.settings import ServingSettings

logger = logging.getLogger(__name__)


def _publish_model_info(app: FastAPI) -> None:
    agent = app.state.agent_holder.agent
    rasa_model = model_id(agent) if agent is not None else "none"
    app.state.model_version = default_model_version(agent)
    metrics.MODEL_INFO.info({"rasa_model": rasa_model, "nlg_model": current_nlg_version() or "none",
                             "nebras": __version__})


def create_app(settings: Optional[ServingSettings] = None, agent: Any = None) -> FastAPI:
    settings = settings or ServingSettings()
    holder = AgentHolder(agent)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if not settings.auth_enabled:
            logger.warning("NEBRAS_API_TOKEN is not set: the API accepts requests without a token")
        if holder.agent is None:
            holder.start_loading(settings.model, settings.endpoints)
        yield
        if holder.agent is not None:
            # release store connections (e.g. Redis lock store, SQL tracker store)
            broker = getattr(getattr(holder.agent, "tracker_store", None), "event_broker", None)
            if broker is not None:
                try:
                    await broker.close()
                except Exception:  # closing is best effort at shutdown
                    logger.debug("event broker close failed", exc_info=True)

    app = FastAPI(
        title="Nebras API",
        version=__version__,
        description="Customer-support assistant: chat, tickets, feedback, health and metrics.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.agent_holder = holder
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    app.state.model_version = None
    holder.on_ready = lambda: _publish_model_info(app)
    if agent is not None:
        _publish_model_info(app)

    for module in (health, chat, feedback, tickets):
        app.include_router(module.router)
    if settings.web_chat:
        app.include_router(web.router)
        app.mount("/static", StaticFiles(directory=str(web.STATIC_DIR)), name="static")

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(ObservabilityMiddleware)
    return app
