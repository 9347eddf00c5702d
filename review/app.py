"""The desk as an ASGI application: its parts (database, ingest, outbox, identity) and the routes over them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from asgi_csrf import asgi_csrf
from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session, sessionmaker
from starlette.middleware.sessions import SessionMiddleware

from pipeline.contracts import utc_now
from review.config import Settings
from review.deps import SignInRequired, signed_in_user
from review.identity import IapVerifier
from review.ingest import Ingest
from review.outbox import Outbox
from review.routes import checks, drafts, queue, sign_in, stats

STATIC = Path(__file__).resolve().parent / "static"


@dataclass
class Desk:
    """Everything the routes use; ingest and the outbox run while the application does."""

    settings: Settings
    sessions: sessionmaker[Session]
    verifier: IapVerifier | None = None
    ingest: Ingest | None = None
    outbox: Outbox | None = None
    clock: Callable[[], datetime] = utc_now


def create_app(desk: Desk):
    """The FastAPI application, wrapped in CSRF protection for its forms."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        for part in (desk.outbox, desk.ingest):
            if part is not None:
                part.start()
        try:
            yield
        finally:
            for part in (desk.ingest, desk.outbox):
                if part is not None:
                    part.stop()

    # Every route asks who is calling: behind IAP, a request without a valid signed header gets 401, reads included.
    app = FastAPI(
        title="chat-triage review desk", lifespan=lifespan, docs_url="/api/docs", openapi_url="/api/openapi.json",
        dependencies=[Depends(signed_in_user)],
    )
    app.state.desk = desk
    for area in (queue, drafts, checks, stats, sign_in):
        app.include_router(area.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(SignInRequired, _to_sign_in)
    # Behind IAP the desk is only served over HTTPS; locally it is plain http://127.0.0.1.
    app.add_middleware(
        SessionMiddleware, secret_key=desk.settings.secret_key, same_site="lax",
        https_only=desk.settings.auth == "iap", session_cookie="review_desk",
    )
    # The JSON API takes only application/json bodies, which a cross-site form cannot send; the forms carry a token.
    return asgi_csrf(
        app, signing_secret=desk.settings.secret_key, cookie_secure=desk.settings.auth == "iap",
        skip_if_scope=lambda scope: scope["path"].startswith("/api/"),
    )


async def _to_sign_in(request: Request, _error: SignInRequired) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/sign-in?next={quote(target)}", status_code=303)
