"""``nebras nlg-server``: the response generator behind Rasa's NLG endpoint protocol.

Rasa's ``CallbackNaturalLanguageGenerator`` (``nlg: url: http://host:5056/nlg`` in
``endpoints.yml``) POSTs, for every bot response::

    {"response": "utter_greet", "id": null, "arguments": {...}, "tracker": {<tracker state>},
     "channel": {"name": "rest"}}

(Rasa 1.x sent ``template`` instead of ``response``; both are accepted) and expects a message::

    {"text": "...", "buttons": [...], "image": null, "elements": [], "attachment": null,
     "custom": {}, "generated": true, "model_version": "..."}

The server answers with exactly what the in-process NLG would send: the tracker is rebuilt with
the domain's slots, and :class:`nebras_bot.nlg.GPT2NaturalLanguageGenerator` renders the templated
response (slot filling, conditional variations, buttons, images, custom payloads) and rewrites its
text with the model when the response opts in; any failure sends the templated reply. Generation
runs through the continuous-batching worker (``batching`` is always on here): concurrent requests
are decoded together and join the running batch between decoding steps, which is what lets one
generator process serve many assistants.

Keys other than the message fields (``generated``, ``model_version``, ``generation_fallback``)
end up in the ``BotUttered`` metadata on the Rasa side.
"""
from __future__ import annotations

import hmac
import logging
from contextlib import asynccontextmanager
from typing import Any, Dict, List, Optional

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from nebras_bot import __version__
from nebras_bot.serving.settings import NLGServerSettings

logger = logging.getLogger(__name__)

NLG_ROUTE = "/nlg"
HEALTH_ROUTE = "/healthz"
TOKEN_QUERY = "token"  # Rasa's EndpointConfig sends `token:` as this query parameter
DEFAULT_SENDER = "nlg"
MESSAGE_KEYS = ("text", "buttons", "image", "elements", "attachment", "custom")


class NLGRequest(BaseModel):
    """Rasa's NLG request body."""

    response: Optional[str] = Field(None, description="the response (utter_ action) to render")
    template: Optional[str] = Field(None, description="Rasa 1.x name of `response`")
    id: Optional[str] = None
    arguments: Dict[str, Any] = Field(default_factory=dict)
    tracker: Dict[str, Any] = Field(default_factory=dict)
    channel: Dict[str, Any] = Field(default_factory=dict)

    @property
    def response_name(self) -> Optional[str]:
        return self.response or self.template


class NLGResponse(BaseModel):
    """The message Rasa turns into a ``BotUttered`` event."""

    text: Optional[str] = None
    buttons: List[Dict[str, Any]] = Field(default_factory=list)
    image: Optional[str] = None
    elements: List[Dict[str, Any]] = Field(default_factory=list)
    attachment: Optional[Dict[str, Any]] = None
    custom: Dict[str, Any] = Field(default_factory=dict)
    generated: bool = False
    model_version: Optional[str] = None
    generation_fallback: Optional[str] = None


def load_domain(path) -> Any:
    """The Rasa domain with the templated responses and the slots (clear error when missing)."""
    from pathlib import Path

    from rasa.shared.core.domain import Domain

    if not Path(path).exists():
        raise FileNotFoundError(f"domain {path} not found: pass --domain with the assistant's domain.yml")
    return Domain.load(str(path))


def build_nlg(settings: NLGServerSettings, generator: Any = None, domain: Any = None) -> Any:
    """The NLG (templated + generated replies) with a batching generator, from the settings."""
    from nebras_bot.generation.generator import ResponseGenerator
    from nebras_bot.generation.settings import GenerationSettings
    from nebras_bot.nlg import GPT2NaturalLanguageGenerator

    domain = domain if domain is not None else load_domain(settings.domain)
    gen_settings = GenerationSettings(
        batching=True, batch_max_size=settings.batch_max_size, batch_wait_ms=settings.batch_wait_ms
    )
    if settings.model_source:
        gen_settings = gen_settings.copy(update={"model": settings.model_source})
    if generator is None:
        generator = ResponseGenerator.load(gen_settings)
    # The NLG's choices (mode, rephrase_all, timeout) follow the generator's own settings.
    options = {k: v for k, v in generator.settings.dict().items() if k != "model"}
    return GPT2NaturalLanguageGenerator(None, domain, generator=generator, **options), domain


def _message(response: Dict[str, Any]) -> NLGResponse:
    """Rasa's message shape: lists/objects never null where Rasa's schema wants a type."""
    custom = response.get("custom")
    return NLGResponse(
        text=response.get("text"),
        buttons=list(response.get("buttons") or []),
        image=response.get("image"),
        elements=list(response.get("elements") or []),
        attachment=response.get("attachment") if isinstance(response.get("attachment"), dict) else None,
        custom=custom if isinstance(custom, dict) else {},
        generated=bool(response.get("generated")),
        model_version=response.get("model_version"),
        generation_fallback=response.get("generation_fallback"),
    )


def create_nlg_app(
    settings: Optional[NLGServerSettings] = None, generator: Any = None, domain: Any = None
) -> FastAPI:
    """The NLG server app; pass ``generator``/``domain`` to reuse loaded ones (tests, benchmarks)."""
    settings = settings or NLGServerSettings()
    nlg, domain = build_nlg(settings, generator, domain)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if not settings.api_token:
            logger.warning("NEBRAS_NLG_API_TOKEN is not set: the NLG server accepts requests without a token")
        yield
        nlg.generator.close()

    app = FastAPI(title="Nebras NLG server", version=__version__, lifespan=lifespan,
                  description="Rasa's NLG endpoint protocol, answered by the Nebras response generator.")
    app.state.nlg = nlg
    app.state.domain = domain

    def authorised(request: Request) -> None:
        if not settings.api_token:
            return
        header = request.headers.get("authorization", "")
        offered = header[7:] if header.lower().startswith("bearer ") else request.query_params.get(TOKEN_QUERY, "")
        if not hmac.compare_digest(offered.encode(), settings.api_token.encode()):
            raise HTTPException(status_code=401, detail="missing or wrong token")

    @app.get(HEALTH_ROUTE)
    async def health() -> Dict[str, Any]:
        decoder = nlg.generator.decoder
        return {
            "status": "ok" if nlg.generator.available else "degraded",
            "model_version": nlg.generator.model_version,
            "batches": getattr(decoder, "prompt_passes", 0),
            "max_batch_size": getattr(decoder, "max_batch_size", None),
        }

    @app.post(NLG_ROUTE, response_model=NLGResponse, dependencies=[Depends(authorised)])
    async def generate(body: NLGRequest) -> NLGResponse:
        from rasa.shared.core.trackers import DialogueStateTracker

        name = body.response_name
        if not name:
            raise HTTPException(status_code=422, detail="the request names no response (`response` or `template`)")
        if name not in domain.responses:
            raise HTTPException(status_code=404, detail=f"the domain has no response {name!r}")
        sender = str(body.tracker.get("sender_id") or DEFAULT_SENDER)
        try:
            tracker = DialogueStateTracker.from_dict(sender, list(body.tracker.get("events") or []), domain.slots)
        except Exception as error:  # noqa: BLE001 - a malformed tracker is the caller's error
            raise HTTPException(status_code=422, detail=f"invalid tracker events: {error}") from error
        channel = str(body.channel.get("name") or "")
        response = await nlg.generate(name, tracker, channel, domain_responses=domain.responses, **body.arguments)
        if response is None:  # cannot happen for a known response; never send an empty message
            raise HTTPException(status_code=404, detail=f"no message for response {name!r}")
        return _message(response)

    return app
