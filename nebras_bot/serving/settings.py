"""Settings of the serving stage, read from the environment (``NEBRAS_*``).

One typed object, the only place where defaults live. ``NEBRAS_API_TOKEN`` turns bearer-token
auth on; leaving it unset turns auth off (a warning is logged at start-up).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from pydantic import BaseSettings, Field, validator

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_NLG_PORT = 5056
DEFAULT_ENDPOINTS = "endpoints.yml"
DEFAULT_MAX_BODY_BYTES = 64 * 1024
DEFAULT_MAX_MESSAGE_CHARS = 2000
DEFAULT_RATE_LIMIT_PER_MINUTE = 120
DEFAULT_RATE_LIMIT_BURST = 20
DEFAULT_ACTION_HEALTH_TIMEOUT_S = 1.0
CHANNEL_NAME = "nebras"


class ServingSettings(BaseSettings):
    """``nebras serve`` and the ``NebrasChannel`` Rasa channel."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    model: Optional[Path] = Field(None, description="Rasa model (.tar.gz); default: newest in models/")
    endpoints: Optional[Path] = Field(
        Path(DEFAULT_ENDPOINTS), description="Rasa endpoints.yml (NLG, tracker/lock store, actions)"
    )
    api_token: Optional[str] = Field(None, description="bearer token; unset = auth off")
    cors_origins: List[str] = Field(default_factory=list, description="allowed origins; empty = closed")
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS
    rate_limit_per_minute: int = Field(DEFAULT_RATE_LIMIT_PER_MINUTE, description="per sender; 0 = off")
    rate_limit_burst: int = DEFAULT_RATE_LIMIT_BURST
    action_health_timeout_s: float = DEFAULT_ACTION_HEALTH_TIMEOUT_S
    ready_requires_actions: bool = Field(
        False, description="true: /readyz answers 503 while the action server is down"
    )
    web_chat: bool = Field(True, description="serve the web chat page at /")
    log_json: bool = Field(True, description="structured JSON logs (structlog)")

    class Config:
        env_prefix = "NEBRAS_"

        @classmethod
        def parse_env_var(cls, field_name: str, raw_value: str):
            """Lists come as comma-separated text (``a,b``) or JSON (``["a", "b"]``)."""
            if field_name == "cors_origins" and not raw_value.lstrip().startswith("["):
                return [origin.strip() for origin in raw_value.split(",") if origin.strip()]
            return cls.json_loads(raw_value)

    @validator("cors_origins", pre=True)
    def _split_origins(cls, value):  # noqa: N805 - pydantic validator
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @validator("api_token", pre=True)
    def _empty_token_is_none(cls, value):  # noqa: N805
        return value or None

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_token)


class NLGServerSettings(BaseSettings):
    """``nebras nlg-server``: Rasa's NLG endpoint protocol backed by the response generator."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_NLG_PORT
    domain: Path = Path("domain.yml")
    model_source: Optional[str] = Field(None, description="generator model source; default: models/nlg/current")
    batch_max_size: int = 8
    batch_wait_ms: float = 10.0
    api_token: Optional[str] = None

    class Config:
        env_prefix = "NEBRAS_NLG_"

    @validator("api_token", pre=True)
    def _empty_token_is_none(cls, value):  # noqa: N805
        return value or None
