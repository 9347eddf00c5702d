"""The review desk on the local stack: ingest without loss or repeats, and an outbox that outlasts Pub/Sub and
BigQuery going away while agents decide."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from local.stack import LocalStack, free_port
from pipeline.contracts import ReviewRow
from pipeline.table_schema import bigquery_schema
from review.app import create_app
from review.db import make_engine, session_factory, upgrade
from review.models import Draft, UnreadableMessage
from tests.review_support import desk_on, publish_reviews, review_message, wait_for
from tests.support import own_stack

_LOGGER = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent


def _drafts(database_url: str) -> tuple[list[str], int]:
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            unreadable = session.scalar(select(func.count()).select_from(UnreadableMessage))
            return list(session.scalars(select(Draft.chat_id))), unreadable
    finally:
        engine.dispose()


def test_duplicates_give_one_draft_and_an_unreadable_message_is_kept(stack, tmp_path):
    stack = own_stack(stack, "desk-ingest")
    database_url = f"sqlite:///{tmp_path / 'desk.sqlite3'}"
    desk = desk_on(database_url, subscription=stack.resources.review_desk_subscription, subscriber=stack.subscriber)
    with TestClient(create_app(desk)):
        publish_reviews(stack, [review_message("a"), review_message("b"), review_message("a"), b"not a review"])
        wait_for(lambda: _drafts(database_url) == (["a", "b"], 1) or None, 30, what="two drafts and one unreadable")
        # A later message for a stored chat (a redelivery, or the job publishing it again) changes nothing.
        publish_reviews(stack, [review_message("a", draft="A second draft for the same chat.")])
        time.sleep(2)
    assert _drafts(database_url) == (["a", "b"], 1)
    assert stack.pull(stack.resources.review_desk_subscription) == [], "every message acknowledged"
    with desk.sessions() as session:
        assert session.get(Draft, "a").draft_reply.startswith("We are sorry"), "the first stored stays"


def test_a_pull_that_cannot_start_is_reported_and_the_desk_still_stops(stack, tmp_path, caplog):
    missing = stack.resources.subscription("no-such-subscription")
    desk = desk_on(f"sqlite:///{tmp_path / 'desk.sqlite3'}", subscription=missing, subscriber=stack.subscriber)
    with caplog.at_level(logging.ERROR, logger="review.ingest"), TestClient(create_app(desk)) as client:
        wait_for(lambda: "ingest stopped" in caplog.text, 30, what="the failed pull reported")
        assert client.get("/api/queue").status_code == 200, "the pages and the API go on"
    assert f"pulling {missing} failed: 404" in caplog.text


def _desk_process(stack: LocalStack, database_url: str, subscription: str, log: Path) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "review", f"--database_url={database_url}", f"--subscription={subscription}",
        f"--port={free_port()}", "--log_level=INFO",
    ]
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PUBSUB_EMULATOR_HOST": stack.pubsub_host})


def test_a_desk_killed_between_commit_and_ack_loses_and_doubles_nothing(stack, tmp_path):
    stack = own_stack(stack, "desk-crash")
    # A subscription of its own with a short deadline: what the killed desk held comes back in 10 s, not 60.
    subscription = stack.resources.subscription("review-desk-crash")
    stack.subscriber.create_subscription(name=subscription, topic=stack.resources.review_topic, ack_deadline_seconds=10)
    database_url = f"sqlite:///{tmp_path / 'desk.sqlite3'}"
    chats = [f"c{n:03d}" for n in range(200)]
    publish_reviews(stack, [review_message(chat_id) for chat_id in chats])
    upgrade(make_engine(database_url))  # so that the polls below can count before the desk is up

    log = tmp_path / "desk.log"
    first = _desk_process(stack, database_url, subscription, log)
    try:
        started = wait_for(lambda: _drafts(database_url)[0] and time.monotonic(), 60, interval=0.05, what="first draft")
        stored_then = wait_for(lambda: (count := len(_drafts(database_url)[0])) >= 50 and count, 60, interval=0.05)
        rate = stored_then / (time.monotonic() - started)
        # Pub/Sub frozen: what the desk commits from now on cannot be acknowledged before it is killed.
        freeze = threading.Thread(target=stack.pubsub_freeze, args=(4,))
        freeze.start()
        frozen_at = len(_drafts(database_url)[0])
        wait_for(lambda: len(_drafts(database_url)[0]) > frozen_at, 3, interval=0.02, what="a commit, unacknowledged")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        freeze.join()
    finally:
        first.kill()
    killed_at = len(_drafts(database_url)[0])
    _LOGGER.warning(
        "ingest: about %.0f messages/s into SQLite; killed with %d of %d stored", rate, killed_at, len(chats)
    )
    assert killed_at < len(chats), "killed mid-stream"

    second = _desk_process(stack, database_url, subscription, log)
    try:
        # What the killed desk held comes back after the ack deadline (10 s) with Pub/Sub. The emulator (0.8.20)
        # takes longer: closing a stream fails inside it (NoSuchMethodError in its gRPC, in pubsub.log), so it
        # goes on sending some redeliveries to the dead desk's stream, each lost for another deadline. Measured
        # on two busy cores: 10 to 40 s, and once over 90 s in CI; hence the long wait.
        wait_for(lambda: len(_drafts(database_url)[0]) == len(chats), 240, what="every chat stored after the restart")
        # The messages the first desk committed but could not acknowledge come back too, and are not stored again.
        wait_for(lambda: "is already in the desk" in log.read_text(), 60, what="a redelivered, already stored message")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    stored, unreadable = _drafts(database_url)
    assert sorted(stored) == chats and unreadable == 0


def _replies(stack: LocalStack, timeout: float = 5.0) -> list:
    """Everything on the replies subscription now (pulled until it comes back empty)."""
    received, deadline = [], time.monotonic() + timeout
    while (batch := stack.pull(stack.resources.replies_subscription)) or time.monotonic() < deadline:
        received += batch
        if not batch:
            time.sleep(0.5)
    return received


def test_decisions_made_while_pubsub_and_bigquery_are_away_go_out_once_each(stack, tmp_path):
    stack = own_stack(stack, "desk-outbox")
    names = stack.resources
    desk = desk_on(
        f"sqlite:///{tmp_path / 'desk.sqlite3'}", subscription=names.review_desk_subscription,
        replies_topic=names.replies_topic, bigquery_table=names.reviews_table_name, subscriber=stack.subscriber,
        publisher=stack.publisher, bigquery=stack.bigquery,
    )
    chats = [f"o{n}" for n in range(8)]
    decide = {chat_id: {"decision": "approve"} for chat_id in chats}
    decide["o3"] = {"decision": "reject", "reason": "draft_unusable"}
    decide["o6"] = {"decision": "edit", "text": "Sorry, a refund is on its way."}
    with TestClient(create_app(desk)) as client:
        publish_reviews(stack, [review_message(chat_id) for chat_id in chats])
        wait_for(lambda: len(client.get("/api/queue").json()) == len(chats), 30, what="drafts ingested")

        outage = threading.Thread(target=stack.bigquery_outage, args=(5,))
        outage.start()
        time.sleep(1)
        for chat_id in chats[:4]:
            assert _decide(client, chat_id, decide[chat_id]) == 200
        outage.join()
        freeze = threading.Thread(target=stack.pubsub_freeze, args=(5,))
        freeze.start()
        time.sleep(0.5)
        for chat_id in chats[4:]:
            assert _decide(client, chat_id, decide[chat_id]) == 200
        freeze.join()
        wait_for(lambda: client.get("/api/stats").status_code == 200 and _backlog_empty(desk), 90, what="outbox empty")

    rows = stack.rows(names.reviews_table)
    assert Counter(row["chat_id"] for row in rows) == Counter(chats), "each decision one row"
    table = stack.bigquery.get_table(names.reviews_table_name.replace(":", "."))
    assert [(f.name, f.field_type, f.mode) for f in table.schema] == [
        (f["name"], f["type"], f["mode"]) for f in bigquery_schema(ReviewRow)["fields"]
    ], "the desk created the table from the row contract"
    assert {row["chat_id"]: row["decision"] for row in rows} == {
        chat_id: body["decision"] for chat_id, body in decide.items()
    }
    replies = _replies(stack)
    approved = [chat_id for chat_id in chats if decide[chat_id]["decision"] != "reject"]
    assert Counter(message.attributes["chat_id"] for message in replies) == Counter(approved), "each reply once"
    assert {json.loads(m.data)["chat_id"] for m in replies} == set(approved)


def _decide(client: TestClient, chat_id: str, body: dict) -> int:
    return client.post(f"/api/drafts/{chat_id}/decision", json={**body, "reviewer": "ana"}).status_code


def _backlog_empty(desk) -> bool:
    from review.outbox import backlog

    with desk.sessions() as session:
        return not backlog(session)
