"""What agents do to drafts: list the pending ones, claim one, decide it. The first decision stands."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from rapidfuzz.distance import Levenshtein
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pipeline.contracts import ApprovedReply, ReviewDecision, ReviewRow
from review.models import Decision, Draft, OutboxItem
from review.schemas import DecisionRequest

_LOGGER = logging.getLogger(__name__)
BIGQUERY = "bigquery"
REPLIES = "replies"


class DraftNotFound(LookupError):
    """No draft has this chat id."""


class AlreadyDecided(Exception):
    """The draft was decided before; its decision stands."""

    def __init__(self, decision: Decision):
        super().__init__(f"chat {decision.chat_id} was already decided by {decision.reviewer}: {decision.decision}")
        self.decision = decision


class ClaimedByOther(Exception):
    """Another agent opened the draft a moment ago and is working on it."""

    def __init__(self, draft: Draft):
        super().__init__(
            f"chat {draft.chat_id} is claimed by {draft.claimed_by} until {draft.claimed_until:%H:%M:%S} UTC"
        )
        self.draft = draft


def _pending_query(model_id: str | None, prompt_version: str | None):
    query = select(Draft).outerjoin(Decision).where(Decision.chat_id.is_(None))
    if model_id:
        query = query.where(Draft.model_id == model_id)
    if prompt_version:
        query = query.where(
            or_(Draft.triage_prompt_version == prompt_version, Draft.apology_prompt_version == prompt_version)
        )
    return query


def pending(session: Session, model_id: str | None = None, prompt_version: str | None = None,
            limit: int | None = None) -> list[Draft]:
    """The drafts nobody has decided, oldest first (the first `limit`); `prompt_version` matches the triage or the
    apology prompt's."""
    query = _pending_query(model_id, prompt_version).order_by(Draft.processed_at, Draft.chat_id).limit(limit)
    return list(session.scalars(query).unique())


def count_pending(session: Session, model_id: str | None = None, prompt_version: str | None = None) -> int:
    return session.scalar(select(func.count()).select_from(_pending_query(model_id, prompt_version).subquery()))


def variants(session: Session) -> tuple[list[str], list[str]]:
    """Every model id and every prompt version among the drafts, for the queue's filters."""
    models = session.scalars(select(Draft.model_id).distinct().order_by(Draft.model_id)).all()
    triage = session.scalars(select(Draft.triage_prompt_version).distinct()).all()
    apology = session.scalars(select(Draft.apology_prompt_version).distinct()).all()
    return list(models), sorted(set(triage) | set(apology))


def get_draft(session: Session, chat_id: str) -> Draft:
    draft = session.get(Draft, chat_id, populate_existing=True)
    if draft is None:
        raise DraftNotFound(chat_id)
    return draft


def claimed_by_other(draft: Draft, reviewer: str, now: datetime) -> bool:
    return draft.claimed_by not in (None, reviewer) and draft.claimed_until is not None and draft.claimed_until > now


def claim(session: Session, chat_id: str, reviewer: str, now: datetime, minutes: float) -> Draft:
    """Claims the draft for `reviewer` for `minutes` unless another agent holds it; returns it either way.

    One conditional UPDATE, so that two agents opening the draft at once cannot both get it.
    """
    session.execute(
        update(Draft)
        .where(Draft.chat_id == chat_id)
        .where(or_(Draft.claimed_by.is_(None), Draft.claimed_by == reviewer, Draft.claimed_until <= now))
        .values(claimed_by=reviewer, claimed_until=now + timedelta(minutes=minutes))
    )
    session.commit()
    return get_draft(session, chat_id)


def decide(session: Session, chat_id: str, request: DecisionRequest, reviewer: str, now: datetime) -> Decision:
    """Stores the decision and its outbox items in one transaction.

    Raises DraftNotFound, AlreadyDecided (also when another agent's decision commits first: the chat id is the
    decisions' key) or ClaimedByOther.
    """
    draft = get_draft(session, chat_id)
    if draft.decision is not None:
        raise AlreadyDecided(draft.decision)
    if claimed_by_other(draft, reviewer, now):
        raise ClaimedByOther(draft)
    decision = _decision(draft, request, reviewer, now)
    session.add(decision)
    session.add_all(_outbox_items(draft, decision, now))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise AlreadyDecided(get_draft(session, chat_id).decision) from None
    _LOGGER.info("chat %s: %s by %s after %.0f s", chat_id, decision.decision, reviewer, decision.seconds_waited)
    return decision


def _decision(draft: Draft, request: DecisionRequest, reviewer: str, now: datetime) -> Decision:
    kind, final_text = request.decision, None
    if kind is ReviewDecision.APPROVE:
        final_text = draft.draft_reply
    elif kind is ReviewDecision.EDIT:
        final_text = request.text
        # An edit that changes nothing is an approval as drafted; the acceptance rate must count it so.
        if final_text == draft.draft_reply.strip():
            kind, final_text = ReviewDecision.APPROVE, draft.draft_reply
    distance = normalized = None
    if final_text is not None:
        distance = Levenshtein.distance(draft.draft_reply, final_text)
        normalized = Levenshtein.normalized_distance(draft.draft_reply, final_text)
    return Decision(
        chat_id=draft.chat_id, decision=kind.value, final_text=final_text,
        reason=request.reason.value if request.reason else None, note=request.note or None,
        corrected_sentiment=request.sentiment, reviewer=reviewer, decided_at=now,
        seconds_waited=max(0.0, (now - draft.processed_at).total_seconds()), edit_distance=distance,
        normalized_edit_distance=normalized,
    )


def review_row(draft: Draft, decision: Decision) -> ReviewRow:
    """The decision as its BigQuery row."""
    return ReviewRow(
        chat_id=draft.chat_id, user_id=draft.user_id, decision=decision.decision, draft_text=draft.draft_reply,
        final_text=decision.final_text, reason=decision.reason, note=decision.note,
        corrected_sentiment=decision.corrected_sentiment, reviewer=decision.reviewer, decided_at=decision.decided_at,
        seconds_waited=decision.seconds_waited, model_id=draft.model_id,
        triage_prompt_version=draft.triage_prompt_version, apology_prompt_version=draft.apology_prompt_version,
        variant=draft.variant, edit_distance=decision.edit_distance,
        normalized_edit_distance=decision.normalized_edit_distance,
    )


def _outbox_items(draft: Draft, decision: Decision, now: datetime) -> list[OutboxItem]:
    """A BigQuery row for every decision; a reply for the customer when it was approved."""
    records = {BIGQUERY: review_row(draft, decision)}
    if decision.final_text is not None:
        records[REPLIES] = ApprovedReply(
            chat_id=draft.chat_id, user_id=draft.user_id, text=decision.final_text,
            edited=decision.decision == ReviewDecision.EDIT.value, reviewer=decision.reviewer,
            decided_at=decision.decided_at,
        )
    return [
        OutboxItem(
            chat_id=draft.chat_id, destination=destination, payload=record.model_dump_json(), created_at=now,
            next_attempt_at=now, attempts=0,
        )
        for destination, record in records.items()
    ]
