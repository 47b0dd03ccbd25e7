"""Loading the Rasa agent that ``nebras serve`` hosts in-process.

The model defaults to the newest ``*.tar.gz`` in ``models/``; the endpoints (NLG, tracker store,
lock store, action server, event broker) come from ``endpoints.yml`` when it exists, otherwise
Rasa's in-memory defaults are used.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Callable, Optional

from nebras_bot import paths

logger = logging.getLogger(__name__)

STATE_LOADING = "loading"
STATE_READY = "ready"
STATE_FAILED = "failed"


class ModelNotFoundError(FileNotFoundError):
    """No trained Rasa model where one was expected."""


def latest_model(directory: Optional[Path] = None) -> Path:
    """The newest Rasa model archive in ``directory`` (default ``models/``)."""
    directory = Path(directory or paths.models_dir())
    candidates = sorted(directory.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise ModelNotFoundError(
            f"no trained Rasa model (*.tar.gz) in {directory}; run `rasa train` or pass --model"
        )
    return candidates[-1]


def resolve_model(model: Optional[Path]) -> Path:
    """``model`` itself (a file, or a directory searched for its newest archive) or the default."""
    if model is None:
        return latest_model()
    model = Path(model)
    if model.is_dir():
        return latest_model(model)
    if not model.exists():
        raise ModelNotFoundError(f"Rasa model {model} does not exist")
    return model


def read_endpoints(path: Optional[Path]) -> Any:
    """Rasa's ``AvailableEndpoints`` from ``path``; empty (in-memory defaults) when it is absent."""
    from rasa.core.utils import AvailableEndpoints

    if path is not None and Path(path).is_file():
        return AvailableEndpoints.read_endpoints(str(path))
    if path is not None:
        logger.warning("endpoints file %s not found: using in-memory tracker and lock stores", path)
    return AvailableEndpoints()


async def load_agent(model: Optional[Path], endpoints_path: Optional[Path]) -> Any:
    """Load the Rasa agent with the project's endpoints; raise when the model cannot be loaded."""
    from rasa.core.agent import load_agent as rasa_load_agent

    model_path = resolve_model(model)
    endpoints = read_endpoints(endpoints_path)
    # action server down -> apology, ticket requests kept in the outbox (nebras_bot.serving.action_fallback)
    from nebras_bot.serving.action_fallback import ResilientActionEndpoint

    endpoints.action = ResilientActionEndpoint.wrap(endpoints.action)
    logger.info("loading Rasa model %s", model_path)
    agent = await rasa_load_agent(model_path=str(model_path), endpoints=endpoints)
    if agent is None or not agent.is_ready():
        raise RuntimeError(f"Rasa model {model_path} could not be loaded")
    return agent


def action_health_url(agent: Any) -> Optional[str]:
    """The action server's ``/health`` URL derived from the agent's action endpoint, if any."""
    endpoint = getattr(agent, "action_endpoint", None)
    url = getattr(endpoint, "url", None)
    if not url:
        return None
    base = url.rstrip("/")
    if base.endswith("/webhook"):
        base = base[: -len("/webhook")]
    return base + "/health"


def model_id(agent: Any) -> str:
    """A short identifier of the loaded Rasa model."""
    processor = getattr(agent, "processor", None)
    path = getattr(processor, "model_filename", None) or getattr(processor, "model_path", None)
    if path:
        name = Path(str(path)).name
        return name[: -len(".tar.gz")] if name.endswith(".tar.gz") else name
    metadata = getattr(processor, "model_metadata", None)
    return str(getattr(metadata, "model_id", "unknown"))


def current_nlg_version() -> Optional[str]:
    """The promoted response model's version (``models/nlg/current``), if there is one."""
    try:
        current = paths.current_nlg_model()
        return current.resolve().name if current.exists() else None
    except OSError:
        return None


def default_model_version(agent: Any) -> str:
    """``model_version`` of a turn without a generated reply: the promoted response model's
    version, else the Rasa model's id."""
    return current_nlg_version() or (model_id(agent) if agent is not None else "none")


class AgentHolder:
    """The agent and its loading state; the app is ready once ``agent`` is set."""

    def __init__(self, agent: Any = None) -> None:
        self.agent = agent
        self.state = STATE_READY if agent is not None else STATE_LOADING
        self.error: Optional[str] = None
        self._task: Optional[asyncio.Task] = None
        self.on_ready: Optional[Callable[[], None]] = None

    @property
    def ready(self) -> bool:
        return self.agent is not None and self.state == STATE_READY

    def start_loading(self, model: Optional[Path], endpoints_path: Optional[Path]) -> None:
        """Load in the background so that /healthz answers (and /readyz says 503) meanwhile."""
        if self.agent is not None or self._task is not None:
            return
        self._task = asyncio.get_event_loop().create_task(self._load(model, endpoints_path))

    async def _load(self, model: Optional[Path], endpoints_path: Optional[Path]) -> None:
        try:
            self.agent = await load_agent(model, endpoints_path)
            self.state = STATE_READY
            if self.on_ready is not None:
                self.on_ready()
            logger.info("Rasa agent ready (model %s)", model_id(self.agent))
        except Exception as error:  # the server keeps answering /healthz and says why
            self.state = STATE_FAILED
            self.error = f"{type(error).__name__}: {error}"
            logger.error("Rasa agent failed to load: %s", self.error)

    async def wait(self, timeout: Optional[float] = None) -> bool:
        if self._task is not None:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        return self.ready
