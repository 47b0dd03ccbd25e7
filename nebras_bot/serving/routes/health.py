"""``GET /healthz`` (liveness), ``GET /readyz`` (readiness), ``GET /metrics`` (Prometheus)."""
from __future__ import annotations

from typing import Optional

import httpx
from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.responses import JSONResponse, Response

from nebras_bot.serving import agent as agent_module
from nebras_bot.serving.schemas import Health, Readiness

router = APIRouter(tags=["operations"])

TEMPLATED_NLG = "TemplatedNaturalLanguageGenerator"


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up (says nothing about the model)."""
    return Health(status="ok")


def generator_status(agent) -> str:
    """``degraded`` while the generator serves templated replies only (its gauge is 1)."""
    value = REGISTRY.get_sample_value("nebras_generator_degraded")
    if value:
        return "degraded"
    nlg = getattr(agent, "nlg", None)
    if nlg is None or type(nlg).__name__ == TEMPLATED_NLG:
        return "templates_only"
    return "ok"


async def action_server_status(url: Optional[str], timeout: float) -> str:
    if not url:
        return "not_configured"
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(url)
        return "ok" if response.status_code == 200 else "down"
    except httpx.HTTPError:
        return "down"


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(request: Request) -> JSONResponse:
    """200 once the Rasa model is loaded (``status`` = ``ready`` or ``degraded``); 503 before."""
    state = request.app.state
    holder = state.agent_holder
    if not holder.ready:
        body = Readiness(status=holder.state, model_loaded=False, detail=holder.error)
        return JSONResponse(body.dict(), status_code=503)
    actions = await action_server_status(
        agent_module.action_health_url(holder.agent), state.settings.action_health_timeout_s
    )
    generator = generator_status(holder.agent)
    degraded = generator == "degraded" or actions == "down"
    body = Readiness(
        status="degraded" if degraded else "ready", model_loaded=True,
        model=agent_module.model_id(holder.agent), generator=generator, action_server=actions,
    )
    code = 503 if actions == "down" and state.settings.ready_requires_actions else 200
    return JSONResponse(body.dict(), status_code=code)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
