"""What each request is handed: its database session, the agent deciding, the templates, the clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated

import jinja2
from fastapi import Depends, HTTPException, Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from sqlalchemy.orm import Session

from review.identity import IAP_HEADER, NotAuthenticated

# Autoescaped (Starlette's default for Jinja2): a chat is untrusted input and must show as text.
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")


@jinja2.pass_context
def _csrf_field(context) -> Markup:
    """The hidden field that carries the form's CSRF token (checked by asgi-csrf against its cookie)."""
    token = context["request"].scope["csrftoken"]()
    return Markup('<input type="hidden" name="csrftoken" value="{}">').format(token)


def _duration(seconds: float) -> str:
    """A wait as a person says it: 40 s, 12 min, 3 h 5 min, 2 d 4 h."""
    minutes, hours, days = int(seconds // 60), int(seconds // 3600), int(seconds // 86400)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if hours < 1:
        return f"{minutes} min"
    if days < 1:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"


templates.env.globals["csrf"] = _csrf_field
templates.env.filters["duration"] = _duration


class SignInRequired(Exception):
    """A page was asked for by someone the desk does not know yet (local desk: no name given)."""


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.desk.sessions() as session:
        yield session


def now(request: Request) -> datetime:
    return request.app.state.desk.clock()


def signed_in_user(request: Request) -> str | None:
    """Behind IAP, the verified user (401 without a valid header); locally, the name given at sign-in, if any."""
    verifier = request.app.state.desk.verifier
    if verifier is None:
        return request.session.get("reviewer")
    try:
        return verifier.user(request.headers.get(IAP_HEADER))
    except NotAuthenticated as error:
        raise HTTPException(status_code=401, detail=str(error)) from error


def page_reviewer(user: Annotated[str | None, Depends(signed_in_user)]) -> str:
    """The agent using a page; a local desk sends a newcomer to the sign-in page first."""
    if user is None:
        raise SignInRequired()
    return user


def api_reviewer(named: str | None, user: str | None, request: Request) -> str:
    """Who decides through the JSON API: behind IAP the signed-in user; locally, the body's `reviewer` or the
    sign-in name."""
    behind_iap = request.app.state.desk.verifier is not None
    if behind_iap and named not in (None, user):
        raise HTTPException(status_code=422, detail=f"behind IAP the reviewer is the signed-in user, {user}")
    reviewer = user if behind_iap else named or user
    if reviewer is None:
        raise HTTPException(status_code=422, detail="who decided? give `reviewer` (or sign in on the desk's page)")
    return reviewer


SessionDep = Annotated[Session, Depends(get_session)]
NowDep = Annotated[datetime, Depends(now)]
UserDep = Annotated[str | None, Depends(signed_in_user)]
ReviewerDep = Annotated[str, Depends(page_reviewer)]
