"""Request and response bodies of the Nebras HTTP API (pydantic v1)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from pydantic import BaseModel, Field, constr

# Hard caps in the schema; the configured (smaller) limits are checked in the routes.
SCHEMA_MAX_MESSAGE_CHARS = 20_000
SENDER_ID = constr(strip_whitespace=True, min_length=1, max_length=128, regex=r"^[\w.:@+-]+$")
TICKET_ID = constr(regex=r"^TCK-[A-Z0-9]{6,}$")
# At least one character that is not white space (the ticket store refuses a blank description).
NOT_BLANK = r"^\s*\S"


class ChatRequest(BaseModel):
    sender_id: SENDER_ID = Field(..., description="conversation id chosen by the client")  # type: ignore[valid-type]
    message: str = Field(..., min_length=1, max_length=SCHEMA_MAX_MESSAGE_CHARS)
    metadata: Optional[Dict[str, Any]] = None


class BotMessage(BaseModel):
    text: str = ""
    buttons: Optional[List[Dict[str, Any]]] = None
    image: Optional[str] = None
    custom: Optional[Dict[str, Any]] = None
    generated: bool = False


class ChatResponse(BaseModel):
    sender_id: str
    messages: List[BotMessage]
    intent: Optional[str] = None
    confidence: Optional[float] = None
    generated: bool = False
    model_version: Optional[str] = None


class FeedbackRequest(BaseModel):
    sender_id: SENDER_ID  # type: ignore[valid-type]
    rating: constr(regex=r"^(up|down)$")  # type: ignore[valid-type]
    message_text: Optional[str] = Field(None, max_length=SCHEMA_MAX_MESSAGE_CHARS,
                                        description="the bot reply rated (default: the last one)")
    generated: Optional[bool] = None
    model_version: Optional[str] = Field(None, max_length=200)
    comment: Optional[str] = Field(None, max_length=2000)


class FeedbackResponse(BaseModel):
    id: Optional[Any] = None
    stored: bool


class TicketCreate(BaseModel):
    email: str = Field(..., max_length=320, regex=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    description: str = Field(..., min_length=1, max_length=SCHEMA_MAX_MESSAGE_CHARS, regex=NOT_BLANK)
    sender_id: Optional[SENDER_ID] = None  # type: ignore[valid-type]
    order_id: Optional[str] = Field(None, max_length=64)
    idempotency_key: Optional[str] = Field(None, max_length=128)


class TicketResolution(BaseModel):
    reply: str = Field(..., min_length=1, max_length=SCHEMA_MAX_MESSAGE_CHARS,
                       description="the agent's answer; used as a training target by `nebras learn`")


class Ticket(BaseModel):
    id: str
    status: str
    email: Optional[str] = None
    description: Optional[str] = None
    order_id: Optional[str] = None
    resolution: Optional[str] = None
    created_at: Optional[str] = None

    class Config:
        extra = "allow"


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str = Field(..., description="ready | degraded | loading | failed")
    model_loaded: bool
    model: Optional[str] = None
    generator: str = Field("unknown", description="ok | degraded (templated replies only) | unknown")
    action_server: str = Field("not_configured", description="ok | down | not_configured")
    detail: Optional[str] = None


class ErrorBody(BaseModel):
    detail: Any
