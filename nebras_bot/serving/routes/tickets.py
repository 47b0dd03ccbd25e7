"""``/v1/tickets``: open a ticket, read it, record an agent's resolution (feeds ``nebras learn``)."""
from __future__ import annotations

from typing import Any, Optional

from fastapi import APIRouter, Depends, Header, Request
from fastapi.exceptions import HTTPException

from nebras_bot.serving.schemas import ErrorBody, Ticket, TicketCreate, TicketResolution
from nebras_bot.serving.security import require_token

router = APIRouter(prefix="/v1/tickets", tags=["tickets"], dependencies=[Depends(require_token)])
ORIGIN_API = "api"
TICKET_ID_REGEX = r"^TCK-[A-Z0-9]{6,}$"


def ticket_store(request: Request) -> Any:
    """The app's ``TicketStore`` (engineer E's support storage), created on first use."""
    store = getattr(request.app.state, "ticket_store", None)
    if store is None:
        from nebras_bot.support.tickets import TicketStore

        store = TicketStore()
        request.app.state.ticket_store = store
    return store


def to_body(ticket: Any) -> Ticket:
    created = getattr(ticket, "created_at", None)
    return Ticket(
        id=ticket.id, status=ticket.status, email=getattr(ticket, "email", None),
        description=getattr(ticket, "description", None), order_id=getattr(ticket, "order_id", None),
        resolution=getattr(ticket, "resolution", None),
        created_at=created.isoformat() if hasattr(created, "isoformat") else created,
    )


@router.post("", response_model=Ticket, status_code=201, responses={401: {"model": ErrorBody}})
def create_ticket(
    request: Request, body: TicketCreate, idempotency_key: Optional[str] = Header(None, max_length=128)
) -> Ticket:
    """Open a ticket. Sending the same ``Idempotency-Key`` (header or body) again returns the
    ticket created the first time instead of a second one."""
    from nebras_bot.support.tickets import idempotency_key as make_key

    key = body.idempotency_key or idempotency_key or make_key(
        ORIGIN_API, body.sender_id, body.email, body.order_id, body.description
    )
    ticket = ticket_store(request).create(
        description=body.description, idempotency_key=key, email=body.email, order_id=body.order_id,
        origin=ORIGIN_API, sender_id=body.sender_id,
    )
    return to_body(ticket)


@router.get("/{ticket_id}", response_model=Ticket, responses={404: {"model": ErrorBody}})
def get_ticket(request: Request, ticket_id: str) -> Ticket:
    ticket = ticket_store(request).get(ticket_id)
    if ticket is None:
        raise HTTPException(status_code=404, detail=f"no ticket {ticket_id!r}")
    return to_body(ticket)


@router.post("/{ticket_id}/resolution", response_model=Ticket, responses={404: {"model": ErrorBody}})
def resolve_ticket(request: Request, ticket_id: str, body: TicketResolution) -> Ticket:
    """Record the human agent's answer; ``nebras learn`` uses it as a training target."""
    from nebras_bot.support.tickets import TicketNotFound

    try:
        ticket = ticket_store(request).resolve(ticket_id, body.reply)
    except TicketNotFound:
        raise HTTPException(status_code=404, detail=f"no ticket {ticket_id!r}") from None
    except ValueError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    return to_body(ticket)
