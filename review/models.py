"""The desk's database: drafts waiting for agents, their decisions, sentiment checks with their verdicts, and the
outbox of what still has to go out.

The schema changes only through the Alembic migrations in `review/migrations/`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from pipeline.contracts import DEFAULT_VARIANT


class UtcDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every database: SQLite keeps no time zone, so it is stored as naive UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the desk stores UTC times only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Draft(Base):
    """A review message from the pipeline: an unhappy customer's chat and the drafted apology. One per chat."""

    __tablename__ = "drafts"

    chat_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(256))
    chat_message: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text)
    draft_reply: Mapped[str] = mapped_column(Text)
    model_id: Mapped[str] = mapped_column(String(256), index=True)
    triage_prompt_version: Mapped[str] = mapped_column(String(128))
    apology_prompt_version: Mapped[str] = mapped_column(String(128))
    variant: Mapped[str] = mapped_column(String(64), server_default=DEFAULT_VARIANT, index=True)
    processed_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    message_id: Mapped[str | None] = mapped_column(String(128))
    claimed_by: Mapped[str | None] = mapped_column(String(256))
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    confidence: Mapped[float | None] = mapped_column(Float)

    decision: Mapped[Decision | None] = relationship(back_populates="draft", lazy="joined")


class Decision(Base):
    """An agent's decision on a draft. The chat id is the key: the first decision stands, a second cannot be stored."""

    __tablename__ = "decisions"

    chat_id: Mapped[str] = mapped_column(ForeignKey("drafts.chat_id"), primary_key=True)
    decision: Mapped[str] = mapped_column(String(16), index=True)
    final_text: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    corrected_sentiment: Mapped[int | None] = mapped_column(Integer)
    reviewer: Mapped[str] = mapped_column(String(256))
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    seconds_waited: Mapped[float] = mapped_column(Float)
    edit_distance: Mapped[int | None] = mapped_column(Integer)
    normalized_edit_distance: Mapped[float | None] = mapped_column(Float)

    draft: Mapped[Draft] = relationship(back_populates="decision")


class Check(Base):
    """A sentiment check from the pipeline: a positive or neutral chat for an agent to confirm or correct, no draft.
    One per chat; the first verdict stands."""

    __tablename__ = "checks"

    chat_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(256))
    chat_message: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text)
    sentiment: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(32))
    model_id: Mapped[str] = mapped_column(String(256))
    prompt_version: Mapped[str] = mapped_column(String(128))
    processed_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    message_id: Mapped[str | None] = mapped_column(String(128))
    verdict: Mapped[int | None] = mapped_column(Integer, doc="the sentiment the agent gave (the model's, if confirmed)")
    reviewer: Mapped[str | None] = mapped_column(String(256))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)


class OutboxItem(Base):
    """A record still to be sent (or sent) to BigQuery or a topic, committed with its decision or check verdict."""

    __tablename__ = "outbox"
    __table_args__ = (UniqueConstraint("chat_id", "destination"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # A decision's or a check's chat, so no foreign key to either table.
    chat_id: Mapped[str] = mapped_column(String(256))
    destination: Mapped[str] = mapped_column(String(16))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)


class UnreadableMessage(Base):
    """A message on the review subscription that is not a review message: kept, not lost, not retried forever."""

    __tablename__ = "unreadable_messages"

    message_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
