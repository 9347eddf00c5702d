"""One draft: its page with the decision form, and the API to read and decide it."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from pipeline.contracts import RejectReason, ReviewDecision, describe_validation_error
from review import decisions
from review.deps import NowDep, ReviewerDep, SessionDep, UserDep, api_reviewer, templates
from review.models import Draft
from review.schemas import DecisionOut, DecisionRequest, DraftOut

router = APIRouter()
REASONS = {
    RejectReason.WRONG_SENTIMENT: "Wrong sentiment",
    RejectReason.DRAFT_UNUSABLE: "Draft unusable",
    RejectReason.NOT_A_COMPLAINT: "Not a complaint",
    RejectReason.OTHER: "Other (say why in the note)",
}


def _draft_page(request: Request, draft: Draft, reviewer: str, now, status_code: int = 200, **context):
    return templates.TemplateResponse(request, "draft.html", {
        "draft": draft, "reviewer": reviewer, "now": now, "reasons": REASONS,
        "claimed_by_other": decisions.claimed_by_other(draft, reviewer, now), "form": {}, **context,
    }, status_code=status_code)


def _found(session, chat_id: str) -> Draft:
    try:
        return decisions.get_draft(session, chat_id)
    except decisions.DraftNotFound:
        raise HTTPException(status_code=404, detail=f"no draft for chat {chat_id}") from None


@router.get("/drafts/{chat_id}", response_class=HTMLResponse, include_in_schema=False)
def draft_page(chat_id: str, request: Request, session: SessionDep, reviewer: ReviewerDep, now: NowDep):
    return _draft_page(request, _found(session, chat_id), reviewer, now)


def _form_request(action: str, text: str, sentiment: str, reason: str, note: str) -> DecisionRequest:
    """The page's one form as an API request: Approve sends the text box, which is an edit once it was changed."""
    fields = {"sentiment": int(sentiment) if sentiment else None}
    if action == "reject":
        fields |= {"decision": ReviewDecision.REJECT, "reason": reason or None, "note": note or None}
    else:
        fields |= {"decision": ReviewDecision.EDIT, "text": text}
    return DecisionRequest(**fields)


@router.post("/drafts/{chat_id}/decision", response_class=HTMLResponse, include_in_schema=False)
def decide_form(
    chat_id: str, request: Request, session: SessionDep, reviewer: ReviewerDep, now: NowDep,
    action: Annotated[Literal["approve", "reject"], Form()], text: Annotated[str, Form()] = "",
    sentiment: Annotated[Literal["", "-1", "0", "1"], Form()] = "",
    reason: Annotated[str, Form()] = "", note: Annotated[str, Form()] = "",
):
    draft = _found(session, chat_id)
    form = {"text": text, "sentiment": sentiment, "reason": reason, "note": note}
    try:
        request_body = _form_request(action, text, sentiment, reason, note)
        decision = decisions.decide(session, chat_id, request_body, reviewer, now)
    except ValidationError as error:
        return _draft_page(request, draft, reviewer, now, 422, error=describe_validation_error(error), form=form)
    except (decisions.AlreadyDecided, decisions.ClaimedByOther) as conflict:
        return _draft_page(request, _found(session, chat_id), reviewer, now, 409, conflict=str(conflict), form=form)
    request.session["flash"] = f"Chat {chat_id}: {_past_tense(decision.decision)}. Thank you, {reviewer}."
    return RedirectResponse(request.url_for("queue_page"), status_code=303)


def _past_tense(decision: str) -> str:
    return {"approve": "approved as drafted", "edit": "edited and approved", "reject": "rejected"}[decision]


@router.get("/api/drafts/{chat_id}", response_model=DraftOut)
def api_draft(chat_id: str, session: SessionDep):
    return _found(session, chat_id)


@router.post(
    "/api/drafts/{chat_id}/decision", response_model=DecisionOut,
    responses={404: {"description": "no such draft"}, 409: {"description": "already decided, or claimed by another"}},
)
def api_decide(chat_id: str, body: DecisionRequest, request: Request, session: SessionDep, user: UserDep, now: NowDep):
    """Decides the draft. Behind IAP the reviewer is the signed-in user; locally, `reviewer` or the sign-in name."""
    reviewer = api_reviewer(body.reviewer, user, request)
    try:
        return decisions.decide(session, chat_id, body, reviewer, now)
    except decisions.DraftNotFound:
        raise HTTPException(status_code=404, detail=f"no draft for chat {chat_id}") from None
    except decisions.AlreadyDecided as conflict:
        raise HTTPException(status_code=409, detail={
            "message": str(conflict), "decision": DecisionOut.model_validate(conflict.decision).model_dump(mode="json"),
        }) from None
    except decisions.ClaimedByOther as conflict:
        raise HTTPException(status_code=409, detail={"message": str(conflict)}) from None
