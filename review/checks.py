"""What agents do to sentiment checks: list the open ones, give a verdict. The first verdict stands.

A verdict that makes a chat negative sends the chat back to the pipeline's chats topic with the agent's
`Correction` (through the outbox, committed with the verdict): the pipeline drafts its apology without triaging it
again, and the draft comes back to the desk's queue like any other.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from pipeline.contracts import ChatMessage, Correction
from review.models import Check, OutboxItem
from review.schemas import CheckVerdict

_LOGGER = logging.getLogger(__name__)
CHATS = "chats"


class CheckNotFound(LookupError):
    """No check has this chat id."""


class AlreadyChecked(Exception):
    """The check has a verdict; it stands."""

    def __init__(self, check: Check):
        super().__init__(f"chat {check.chat_id} was already checked by {check.reviewer}")
        self.check = check


def _open():
    return select(Check).where(Check.decided_at.is_(None))


def open_checks(session: Session, limit: int | None = None) -> list[Check]:
    """The checks without a verdict, oldest first (the first `limit`)."""
    return list(session.scalars(_open().order_by(Check.processed_at, Check.chat_id).limit(limit)))


def count_open(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(_open().subquery()))


def get_check(session: Session, chat_id: str) -> Check:
    check = session.get(Check, chat_id, populate_existing=True)
    if check is None:
        raise CheckNotFound(chat_id)
    return check


def give_verdict(session: Session, chat_id: str, verdict: CheckVerdict, reviewer: str, now: datetime) -> Check:
    """Stores the agent's sentiment for the chat and, when it is negative, the chat to send back for a draft.

    One conditional UPDATE, so that of two agents deciding at once only the first one's verdict is kept.
    Raises CheckNotFound or AlreadyChecked.
    """
    check = get_check(session, chat_id)
    stored = session.execute(
        update(Check).where(Check.chat_id == chat_id, Check.decided_at.is_(None))
        .values(verdict=verdict.sentiment, reviewer=reviewer, decided_at=now)
    ).rowcount
    if not stored:
        session.rollback()
        raise AlreadyChecked(get_check(session, chat_id))
    if verdict.sentiment < 0:
        chat = ChatMessage(
            id=check.chat_id, user_id=check.user_id, chat_message=check.chat_message,
            correction=Correction(summary=check.summary, reviewer=reviewer),
        )
        session.add(OutboxItem(
            chat_id=chat_id, destination=CHATS, payload=chat.payload(), created_at=now, next_attempt_at=now,
            attempts=0,
        ))
    session.commit()
    _LOGGER.info("chat %s: sentiment %d (model: %d) by %s", chat_id, verdict.sentiment, check.sentiment, reviewer)
    return get_check(session, chat_id)
