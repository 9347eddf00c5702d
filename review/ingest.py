"""Ingest: review messages and sentiment checks from the pipeline's review subscription into the desk's database,
without loss.

Each message is committed before it is acknowledged, and stored at most once per chat id, so a message
redelivered (not acknowledged in time, or the desk killed between its commit and its ack) or published twice
adds nothing. A message that is neither a review message nor a check is kept in `unreadable_messages` and
acknowledged, so that it is neither lost nor redelivered forever.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from pipeline.contracts import REVIEW_TOPIC_MESSAGE, SentimentCheck, describe_validation_error, utc_now
from review.models import Check, Draft, UnreadableMessage

_LOGGER = logging.getLogger(__name__)
# Messages held at once by the streaming pull: the database takes them one commit at a time anyway.
MAX_OUTSTANDING = 100
# Seconds each lease on a message lasts before the client extends it. Storing takes milliseconds, and what a
# killed desk held comes back this soon (the client's default, 60 s, would hold it a minute).
LEASE_SECS = 10


def _insert_ignoring_duplicates(session: Session, model: type, values: dict) -> bool:
    """INSERT … ON CONFLICT DO NOTHING on the table's key (SQLite and PostgreSQL); True when a row was added."""
    dialect = {"sqlite": sqlite, "postgresql": postgresql}[session.get_bind().dialect.name]
    statement = dialect.insert(model).values(**values).on_conflict_do_nothing()
    return session.execute(statement).rowcount == 1


def store(session: Session, data: bytes, message_id: str, received_at: datetime) -> bool:
    """Stores one review message or check and commits; True when its chat was new (as a draft or as a check),
    False for a repeat or unreadable one."""
    try:
        review = REVIEW_TOPIC_MESSAGE.validate_json(data)
    except ValidationError as error:
        reason = describe_validation_error(error)
        _LOGGER.error("message %s is neither a review message nor a check (%s): kept in unreadable_messages",
                      message_id, reason)
        _insert_ignoring_duplicates(
            session, UnreadableMessage,
            {"message_id": message_id, "data": data, "reason": reason, "received_at": received_at},
        )
        session.commit()
        return False
    if isinstance(review, SentimentCheck):
        model, fields = Check, review.model_dump(exclude={"kind"})
    else:
        model, fields = Draft, review.model_dump()
    added = _insert_ignoring_duplicates(
        session, model, {**fields, "received_at": received_at, "message_id": message_id}
    )
    session.commit()
    if not added:
        _LOGGER.info("chat %s is already in the desk (message %s): not stored again", review.chat_id, message_id)
    return added


class Ingest:
    """A streaming pull of `subscription` that stores each message, then acknowledges it."""

    def __init__(self, subscriber, subscription: str, sessions: sessionmaker[Session],
                 clock: Callable[[], datetime] = utc_now):
        self._subscriber = subscriber
        self._subscription = subscription
        self._sessions = sessions
        self._clock = clock
        self._future = None

    def receive(self, message) -> None:
        """The streaming pull's callback (one of its threads): commit, then ack; nack when the commit failed."""
        try:
            with self._sessions() as session:
                store(session, message.data, message.message_id, self._clock())
        except Exception:
            # Not acknowledged, so Pub/Sub redelivers it: a database that is down for a while loses nothing.
            _LOGGER.exception("could not store message %s; it will be redelivered", message.message_id)
            message.nack()
            return
        message.ack()

    def start(self) -> None:
        from google.cloud import pubsub

        flow_control = pubsub.types.FlowControl(
            max_messages=MAX_OUTSTANDING, max_duration_per_lease_extension=LEASE_SECS
        )
        self._future = self._subscriber.subscribe(
            self._subscription, callback=self.receive, flow_control=flow_control, await_callbacks_on_shutdown=True,
        )
        self._future.add_done_callback(self._ended)
        _LOGGER.info("pulling drafts from %s", self._subscription)

    def _ended(self, future) -> None:
        # The client retries what can be retried; a pull that ends by itself (no such subscription, no permission)
        # stops ingest, and a person must hear of it.
        if not future.cancelled() and (error := future.exception()) is not None:
            _LOGGER.error("ingest stopped: pulling %s failed: %s", self._subscription, error)

    def stop(self) -> None:
        """Stops pulling and waits for the callbacks running now; what they did not ack is redelivered later."""
        if self._future is None:
            return
        self._future.cancel()
        # Not result(): a pull that failed has said so in _ended already, and must not stop the shutdown.
        concurrent.futures.wait([self._future], timeout=30)
        self._future = None
