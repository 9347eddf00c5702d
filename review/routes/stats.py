"""The stats: acceptance, edits, rejections and time to decision per apology variant, model and prompt versions."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from review import comparison, outbox, stats
from review.deps import ReviewerDep, SessionDep, templates
from review.schemas import VariantComparison, VariantStats

router = APIRouter()


@router.get("/stats", response_class=HTMLResponse, include_in_schema=False)
def stats_page(request: Request, session: SessionDep, reviewer: ReviewerDep):
    return templates.TemplateResponse(request, "stats.html", {
        "variants": stats.variant_stats(session), "backlog": outbox.backlog(session), "reviewer": reviewer,
    })


@router.get("/api/stats", response_model=list[VariantStats])
def api_stats(session: SessionDep):
    return stats.variant_stats(session)


@router.get("/api/stats/comparison", response_model=VariantComparison)
def api_comparison(session: SessionDep, baseline: str | None = None):
    try:
        return comparison.compare(stats.variant_stats(session), baseline)
    except ValueError as error:
        raise HTTPException(status_code=404, detail=str(error)) from None
