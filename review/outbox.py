"""The outbox: decisions committed in the desk's database go on to BigQuery and the replies topic, retried until
each destination has taken them.

A send still in flight is never started again (a Pub/Sub publish that waits out a frozen server would otherwise
go out twice); a failed one is retried with a growing pause. BigQuery gets the chat id as insert id and each
reply carries it as an attribute, so that a repeat after a crash of the desk between a send and its record can
be dropped downstream.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from typing import Protocol

from google.api_core.retry import Retry
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from pipeline.contracts import ReviewRow, utc_now
from pipeline.table_schema import bigquery_schema
from review.models import OutboxItem

_LOGGER = logging.getLogger(__name__)
BATCH = 100
MAX_BACKOFF_SECS = 30.0
SEND_TIMEOUT_SECS = 60.0


# Ten seconds of retries inside the BigQuery client (its default is ten minutes): the outbox retries for as long
# as it takes, and logs each failure where a person sees it.
_CLIENT_RETRY = Retry(timeout=10)


class Destination(Protocol):
    name: str

    def send(self, payload: str, chat_id: str) -> None:
        """Delivers one record; raises when it was not delivered."""


class BigQueryTable:
    """The reviews table: created from the ReviewRow contract if needed, one streaming insert per decision."""

    name = "bigquery"

    def __init__(self, client, table_id: str):
        self._client = client
        self._table_id = table_id
        self._table_ready = False

    def send(self, payload: str, chat_id: str) -> None:
        self._create_table()
        errors = self._client.insert_rows_json(
            self._table_id, [json.loads(payload)], row_ids=[chat_id], retry=_CLIENT_RETRY, timeout=10,
        )
        if errors:
            raise RuntimeError(f"BigQuery refused the row of chat {chat_id}: {errors}")

    def _create_table(self) -> None:
        if self._table_ready:
            return
        from google.cloud import bigquery

        schema = [bigquery.SchemaField.from_api_repr(field) for field in bigquery_schema(ReviewRow)["fields"]]
        self._client.create_table(
            bigquery.Table(self._table_id, schema=schema), exists_ok=True, retry=_CLIENT_RETRY, timeout=10
        )
        self._table_ready = True


class Topic:
    """A Pub/Sub topic: one message per record, with the chat id as an attribute. `name` is the outbox's name for
    it: `replies` (approved replies) or `chats` (chats corrected to negative, back to the pipeline)."""

    def __init__(self, name: str, publisher, topic: str):
        self.name = name
        self._publisher = publisher
        self._topic = topic

    def send(self, payload: str, chat_id: str) -> None:
        self._publisher.publish(self._topic, payload.encode("utf-8"), chat_id=chat_id).result(timeout=SEND_TIMEOUT_SECS)


def backoff(attempts: int) -> timedelta:
    """The pause after the `attempts`-th failure: 1 s, 2 s, 4 s … up to MAX_BACKOFF_SECS."""
    return timedelta(seconds=min(MAX_BACKOFF_SECS, 2.0 ** (attempts - 1)))


def backlog(session: Session) -> dict[str, int]:
    """How many records wait for each destination."""
    query = (
        select(OutboxItem.destination, func.count())
        .where(OutboxItem.sent_at.is_(None))
        .group_by(OutboxItem.destination)
    )
    return dict(session.execute(query).all())


class Outbox:
    """Sends what is due, in a thread of its own, every `interval` seconds until stopped."""

    def __init__(self, sessions: sessionmaker[Session], destinations: list[Destination],
                 clock: Callable[[], datetime] = utc_now, interval: float = 0.5, wait_secs: float = 2.0):
        self._sessions = sessions
        self._destinations = {destination.name: destination for destination in destinations}
        self._executors = {
            name: ThreadPoolExecutor(4, thread_name_prefix=f"outbox-{name}") for name in self._destinations
        }
        self._clock = clock
        self._interval = interval
        self._wait_secs = wait_secs
        self._in_flight: dict[int, Future] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def send_due(self) -> int:
        """One pass: starts each due record not already in flight, waits a little, records what finished.

        Returns how many records were delivered.
        """
        with self._sessions() as session:
            due = session.scalars(
                select(OutboxItem)
                .where(OutboxItem.sent_at.is_(None), OutboxItem.next_attempt_at <= self._clock())
                .where(OutboxItem.destination.in_(self._destinations))
                .order_by(OutboxItem.id).limit(BATCH)
            ).all()
            for item in due:
                if item.id not in self._in_flight:
                    destination = self._destinations[item.destination]
                    self._in_flight[item.id] = self._executors[item.destination].submit(
                        destination.send, item.payload, item.chat_id
                    )
            wait([self._in_flight[item.id] for item in due], timeout=self._wait_secs)
            delivered = sum(self._record(item) for item in due if self._in_flight[item.id].done())
            session.commit()
        return delivered

    def _record(self, item: OutboxItem) -> bool:
        error = self._in_flight.pop(item.id).exception()
        now = self._clock()
        if error is None:
            item.sent_at = now
            if item.attempts:
                _LOGGER.info(
                    "chat %s: sent to %s after %d failed attempts", item.chat_id, item.destination, item.attempts
                )
            return True
        item.attempts += 1
        item.last_error = f"{type(error).__name__}: {error}"[:2000]
        item.next_attempt_at = now + backoff(item.attempts)
        _LOGGER.warning(
            "chat %s: %s did not take it (attempt %d: %s); retrying in %.0f s", item.chat_id, item.destination,
            item.attempts, item.last_error[:300], backoff(item.attempts).total_seconds(),
        )
        return False

    def start(self) -> None:
        missing = {"bigquery", "replies", "chats"} - set(self._destinations)
        if missing:
            _LOGGER.warning("no %s configured: those records wait in the outbox", " or ".join(sorted(missing)))
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self.send_due()
            except Exception:
                # The database itself failed; what was not recorded as sent is tried again on the next pass.
                _LOGGER.exception("outbox pass failed")

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for executor in self._executors.values():
            executor.shutdown(wait=False, cancel_futures=True)
