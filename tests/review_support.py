"""Helpers shared by the review desk's tests: review messages, a desk on a database, a signed-in client."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from pipeline.contracts import CheckReason, SentimentCheck
from review.app import Desk
from review.config import Settings
from review.ingest import store
from review.main import build_desk

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
MODEL = "gemma3-270m-sentiment-lora"
TRIAGE = "triage-base-score-v1"
APOLOGY = "apology-base-v1"


def review_message(chat_id: str, *, chat: str | None = None, draft: str | None = None, model_id: str = MODEL,
                   triage: str = TRIAGE, apology: str = APOLOGY, minutes_after: float = 0.0,
                   summary: str = "The order arrived cold and late.", variant: str | None = None) -> bytes:
    """A review message as the pipeline publishes it, made `minutes_after` T0; without `variant`, as the pipeline
    published them before apology variants."""
    variant_field = {} if variant is None else {"variant": variant}
    return json.dumps({
        **variant_field,
        "chat_id": chat_id, "user_id": f"user-{chat_id}",
        "chat_message": chat or f"Chat {chat_id}: my order arrived cold and two hours late.",
        "summary": summary,
        "draft_reply": draft or "We are sorry your order arrived cold and late. We will refund the delivery fee.",
        "model_id": model_id, "triage_prompt_version": triage, "apology_prompt_version": apology,
        "processed_at": (T0 + timedelta(minutes=minutes_after)).isoformat(),
    }).encode()


def check_message(chat_id: str, *, chat: str | None = None, sentiment: int = 1, confidence: float | None = 0.41,
                  reason: CheckReason = CheckReason.LOW_CONFIDENCE, summary: str = "The customer liked the order.",
                  minutes_after: float = 0.0) -> bytes:
    """A sentiment check as the pipeline publishes it on the review topic, made `minutes_after` T0."""
    return SentimentCheck(
        chat_id=chat_id, user_id=f"user-{chat_id}",
        chat_message=chat or f"Chat {chat_id}: the burger was fine, I guess.", summary=summary, sentiment=sentiment,
        confidence=confidence, reason=reason, model_id=MODEL,
        prompt_version=TRIAGE, processed_at=T0 + timedelta(minutes=minutes_after),
    ).model_dump_json().encode()


class Clock:
    """A clock the test moves; the desk reads it for claims, waits and decision times."""

    def __init__(self, start: datetime = T0 + timedelta(hours=1)):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class RunningClock:
    """Real seconds, counted from a fixed start: pages show the same dates and waits on every run."""

    def __init__(self, start: datetime):
        self._start = start
        self._started = time.monotonic()

    def __call__(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._started)


def desk_on(database_url: str, clock: Clock | None = None, **settings) -> Desk:
    """A desk on `database_url` (migrated), without Pub/Sub or BigQuery unless `settings` and clients say so; on
    `clock` if given, else on the real one (which a desk that talks to the emulators needs: Pub/Sub's and
    BigQuery's clocks are real)."""
    clients = {name: settings.pop(name) for name in ("subscriber", "publisher", "bigquery") if name in settings}
    return build_desk(Settings(database_url=database_url, **settings), **clients, **({"clock": clock} if clock else {}))


def add_drafts(desk: Desk, *messages: bytes) -> None:
    """Stores review messages (or checks) as ingest does."""
    with desk.sessions() as session:
        for number, message in enumerate(messages):
            store(session, message, f"message-{number}", T0)


def sign_in(client: TestClient, name: str) -> None:
    """Signs in on a local desk's page, as an agent does (the sign-in page sets the CSRF cookie first)."""
    client.get("/sign-in")
    form = {"name": name, "csrftoken": client.cookies["csrftoken"]}
    response = client.post("/sign-in", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text


def publish_reviews(stack, messages: list[bytes]) -> None:
    """Publishes review messages on the stack's review topic, as the streaming job does."""
    topic = stack.resources.review_topic
    for future in [stack.publisher.publish(topic, message) for message in messages]:
        future.result(timeout=30)


def wait_for(condition, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Polls `condition()` until it returns something true, and returns that; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(interval)
    return result
