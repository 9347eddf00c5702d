"""Sentiment checks: their queue, a check's page with the verdict form, and the API to list and decide them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from pipeline.contracts import CheckReason, describe_validation_error
from review import checks
from review.deps import NowDep, ReviewerDep, SessionDep, UserDep, api_reviewer, templates
from review.models import Check
from review.schemas import CheckOut, CheckVerdict

router = APIRouter()
# Checks on one page of their queue, as for drafts.
PAGE_SIZE = 100
SENTIMENTS = {-1: "negative", 0: "neutral", 1: "positive"}
# Why a chat is in the queue, in the words an agent reads there (keyed as the database stores the reason).
REASONS = {
    CheckReason.LOW_CONFIDENCE.value: "low confidence",
    CheckReason.SAMPLED.value: "random sample",
    CheckReason.IMITATES_ANSWER.value: "imitates the model's answer",
}


def _found(session, chat_id: str) -> Check:
    try:
        return checks.get_check(session, chat_id)
    except checks.CheckNotFound:
        raise HTTPException(status_code=404, detail=f"no check for chat {chat_id}") from None


@router.get("/checks", response_class=HTMLResponse, include_in_schema=False)
def checks_page(request: Request, session: SessionDep, reviewer: ReviewerDep, now: NowDep):
    return templates.TemplateResponse(request, "checks.html", {
        "checks": checks.open_checks(session, limit=PAGE_SIZE), "waiting": checks.count_open(session),
        "reviewer": reviewer, "now": now, "reasons": REASONS, "flash": request.session.pop("flash", None),
    })


def _check_page(request: Request, check: Check, reviewer: str, now, status_code: int = 200, **context):
    return templates.TemplateResponse(request, "check.html", {
        "check": check, "reviewer": reviewer, "now": now, "sentiments": SENTIMENTS, "reasons": REASONS,
        "chosen": str(check.sentiment), **context,
    }, status_code=status_code)


@router.get("/checks/{chat_id}", response_class=HTMLResponse, include_in_schema=False)
def check_page(chat_id: str, request: Request, session: SessionDep, reviewer: ReviewerDep, now: NowDep):
    return _check_page(request, _found(session, chat_id), reviewer, now)


@router.post("/checks/{chat_id}/verdict", response_class=HTMLResponse, include_in_schema=False)
def verdict_form(
    chat_id: str, request: Request, session: SessionDep, reviewer: ReviewerDep, now: NowDep,
    sentiment: Annotated[str, Form()] = "",
):
    check = _found(session, chat_id)
    try:
        verdict = CheckVerdict(sentiment=int(sentiment) if sentiment.lstrip("-").isdigit() else sentiment)
        checks.give_verdict(session, chat_id, verdict, reviewer, now)
    except ValidationError as error:
        message = f"Choose the customer's sentiment ({describe_validation_error(error)})."
        return _check_page(request, check, reviewer, now, 422, error=message, chosen=sentiment)
    except checks.AlreadyChecked as conflict:
        return _check_page(request, conflict.check, reviewer, now, 409, conflict=str(conflict))
    kept = "confirmed" if verdict.sentiment == check.sentiment else "corrected to"
    sent_back = " It goes back to the pipeline for an apology draft." if verdict.sentiment < 0 else ""
    request.session["flash"] = f"Chat {chat_id}: {kept} {SENTIMENTS[verdict.sentiment]}.{sent_back}"
    return RedirectResponse(request.url_for("checks_page"), status_code=303)


@router.get("/api/checks", response_model=list[CheckOut])
def api_checks(session: SessionDep, limit: Annotated[int, Query(ge=1, le=1000)] = PAGE_SIZE):
    """Open checks, oldest first (the first `limit`)."""
    return checks.open_checks(session, limit=limit)


@router.get("/api/checks/{chat_id}", response_model=CheckOut)
def api_check(chat_id: str, session: SessionDep):
    return _found(session, chat_id)


@router.post(
    "/api/checks/{chat_id}/verdict", response_model=CheckOut,
    responses={404: {"description": "no such check"}, 409: {"description": "already checked"}},
)
def api_verdict(chat_id: str, body: CheckVerdict, request: Request, session: SessionDep, user: UserDep, now: NowDep):
    """Confirms or corrects the model's sentiment; a negative verdict sends the chat back for an apology draft."""
    reviewer = api_reviewer(body.reviewer, user, request)
    try:
        return checks.give_verdict(session, chat_id, body, reviewer, now)
    except checks.CheckNotFound:
        raise HTTPException(status_code=404, detail=f"no check for chat {chat_id}") from None
    except checks.AlreadyChecked as conflict:
        raise HTTPException(status_code=409, detail={
            "message": str(conflict), "check": CheckOut.model_validate(conflict.check).model_dump(mode="json"),
        }) from None
