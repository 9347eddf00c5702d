"""The stats: acceptance, edits, rejections and time to decision per model and prompt versions."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from review import outbox, stats
from review.deps import ReviewerDep, SessionDep, templates
from review.schemas import VariantStats

router = APIRouter()


@router.get("/stats", response_class=HTMLResponse, include_in_schema=False)
def stats_page(request: Request, session: SessionDep, reviewer: ReviewerDep):
    return templates.TemplateResponse(request, "stats.html", {
        "variants": stats.variant_stats(session), "backlog": outbox.backlog(session), "reviewer": reviewer,
    })


@router.get("/api/stats", response_model=list[VariantStats])
def api_stats(session: SessionDep):
    return stats.variant_stats(session)
