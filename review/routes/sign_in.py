"""Signing in on a local desk: the agent gives a name, kept in a signed session cookie. Behind IAP, not used."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from review.deps import UserDep, templates

router = APIRouter(include_in_schema=False)


def _local_only(request: Request) -> None:
    if request.app.state.desk.verifier is not None:
        raise HTTPException(status_code=404, detail="behind IAP the reviewer is the signed-in Google user")


def _safe_next(next_url: str) -> str:
    # Only paths of this desk: a link from elsewhere must not turn sign-in into a redirect to another site.
    return next_url if next_url.startswith("/") and not next_url.startswith("//") else "/"


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request, user: UserDep, next: str = "/"):
    _local_only(request)
    return templates.TemplateResponse(request, "sign_in.html", {"reviewer": user, "next": _safe_next(next)})


@router.post("/sign-in")
def sign_in(
    request: Request, name: Annotated[str, Form(max_length=200, pattern=r"\S")], next: Annotated[str, Form()] = "/"
):
    _local_only(request)
    request.session["reviewer"] = name.strip()
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/sign-out")
def sign_out(request: Request):
    _local_only(request)
    request.session.pop("reviewer", None)
    return RedirectResponse(request.url_for("sign_in_page"), status_code=303)
