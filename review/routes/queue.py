"""The queue: pending drafts, oldest first, filtered by model and prompt version; opening one claims it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from review import decisions
from review.deps import NowDep, ReviewerDep, SessionDep, templates
from review.schemas import DraftOut

router = APIRouter()
# Drafts on one page of the queue: an agent works from the top; the count shows how many wait in all.
PAGE_SIZE = 100


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def queue_page(
    request: Request, session: SessionDep, reviewer: ReviewerDep, now: NowDep,
    model_id: str = "", prompt_version: str = "",
):
    drafts = decisions.pending(session, model_id or None, prompt_version or None, limit=PAGE_SIZE)
    models, prompt_versions = decisions.variants(session)
    return templates.TemplateResponse(request, "queue.html", {
        "drafts": drafts, "waiting": decisions.count_pending(session, model_id or None, prompt_version or None),
        "models": models, "prompt_versions": prompt_versions, "model_id": model_id,
        "prompt_version": prompt_version, "reviewer": reviewer, "now": now,
        "claimed_by_other": lambda draft: decisions.claimed_by_other(draft, reviewer, now),
        "flash": request.session.pop("flash", None),
    })


@router.post("/drafts/{chat_id}/open", include_in_schema=False)
def open_draft(chat_id: str, request: Request, session: SessionDep, reviewer: ReviewerDep, now: NowDep):
    """Claims the draft for this agent for a few minutes (unless another holds it), then shows it."""
    decisions.claim(session, chat_id, reviewer, now, request.app.state.desk.settings.claim_minutes)
    return RedirectResponse(request.url_for("draft_page", chat_id=chat_id), status_code=303)


@router.get("/api/queue", response_model=list[DraftOut])
def api_queue(
    session: SessionDep, model_id: str | None = None, prompt_version: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = PAGE_SIZE,
):
    """Pending drafts, oldest first (the first `limit`)."""
    return decisions.pending(session, model_id, prompt_version, limit=limit)
