"""``POST /v1/feedback``: thumbs up/down on a bot reply (stored for ``nebras learn``)."""
from __future__ import annotations

from typing import Any, Dict, Optional

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import HTTPException

from nebras_bot.serving.schemas import ErrorBody, FeedbackRequest, FeedbackResponse
from nebras_bot.serving.security import require_token
from nebras_bot.serving.turns import GENERATED_KEY, MODEL_VERSION_KEY

router = APIRouter(prefix="/v1", tags=["feedback"], dependencies=[Depends(require_token)])


async def last_bot_reply(agent: Any, sender_id: str) -> Optional[Dict[str, Any]]:
    """The last bot message of the conversation with its generated flag and model version."""
    from rasa.shared.core.events import BotUttered

    if agent is None:
        return None
    tracker = await agent.tracker_store.retrieve(sender_id)
    if tracker is None:
        return None
    for event in reversed(list(tracker.events)):
        if isinstance(event, BotUttered) and event.text:
            meta = event.metadata or {}
            nested = meta.get("metadata") if isinstance(meta.get("metadata"), dict) else {}
            return {
                "text": event.text,
                "generated": bool(meta.get(GENERATED_KEY, nested.get(GENERATED_KEY, False))),
                "model_version": meta.get(MODEL_VERSION_KEY, nested.get(MODEL_VERSION_KEY)),
            }
    return None


def feedback_store(request: Request) -> Any:
    store = getattr(request.app.state, "feedback_store", None)
    if store is None:
        from nebras_bot.support.feedback import FeedbackStore

        store = FeedbackStore()
        request.app.state.feedback_store = store
    return store


@router.post("/feedback", response_model=FeedbackResponse, status_code=201,
             responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}})
async def feedback(request: Request, body: FeedbackRequest) -> FeedbackResponse:
    """Rate a bot reply. Without ``message_text`` the conversation's last bot reply is rated."""
    from starlette.concurrency import run_in_threadpool

    # An empty message_text means "not given" (rate the last reply), like a missing one.
    reply = {"text": body.message_text or None, "generated": body.generated, "model_version": body.model_version}
    if reply["text"] is None:
        found = await last_bot_reply(request.app.state.agent_holder.agent, body.sender_id)
        if found is None:
            raise HTTPException(status_code=404, detail="this conversation has no bot reply to rate")
        reply = {k: (reply[k] if reply[k] is not None else v) for k, v in found.items()}
    if reply["model_version"] is None:  # a templated reply: the version /v1/chat reported for it
        reply["model_version"] = request.app.state.model_version
    store = feedback_store(request)
    record = await run_in_threadpool(
        store.add, sender_id=body.sender_id, rating=body.rating, reply_text=reply["text"],
        generated=bool(reply["generated"]), model_version=reply["model_version"], comment=body.comment,
    )
    return FeedbackResponse(id=getattr(record, "id", record), stored=True)
