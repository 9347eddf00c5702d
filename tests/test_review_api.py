"""The review desk's JSON API and its rules, on SQLite and on a real PostgreSQL server: the queue, the four kinds
of decision, the first decision standing, claims, the stats, and what goes into the outbox."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from local.postgres import PostgresServer
from pipeline.contracts import ApprovedReply, ReviewRow
from review import decisions
from review.app import create_app
from review.models import OutboxItem
from review.schemas import DecisionRequest
from tests.review_support import APOLOGY, MODEL, Clock, add_drafts, desk_on, review_message

DRAFT = "We are sorry your order arrived cold and late. We will refund the delivery fee."


@pytest.fixture(scope="module")
def postgres():
    with PostgresServer.start() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'desk.sqlite3'}"
    return request.getfixturevalue("postgres").create_database(f"desk_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def desk(database_url, clock):
    desk = desk_on(database_url, clock)
    yield desk
    desk.sessions.kw["bind"].dispose()


@pytest.fixture
def api(desk):
    with TestClient(create_app(desk)) as client:
        yield client


def _outbox(desk) -> dict[tuple[str, str], dict]:
    with desk.sessions() as session:
        items = session.scalars(select(OutboxItem))
        return {(item.chat_id, item.destination): json.loads(item.payload) for item in items}


def test_the_queue_is_oldest_first_and_filters_by_model_and_prompt_version(desk, api):
    add_drafts(
        desk,
        review_message("late", minutes_after=30),
        review_message("early", minutes_after=1, model_id="gemma-2b"),
        review_message("middle", minutes_after=10, apology="apology-v2"),
    )
    assert [d["chat_id"] for d in api.get("/api/queue").json()] == ["early", "middle", "late"]
    assert [d["chat_id"] for d in api.get("/api/queue", params={"model_id": "gemma-2b"}).json()] == ["early"]
    assert [d["chat_id"] for d in api.get("/api/queue", params={"prompt_version": "apology-v2"}).json()] == ["middle"]
    assert [d["chat_id"] for d in api.get("/api/queue", params={"limit": 2}).json()] == ["early", "middle"]
    api.post("/api/drafts/early/decision", json={"decision": "approve", "reviewer": "ana"})
    assert [d["chat_id"] for d in api.get("/api/queue").json()] == ["middle", "late"], "decided drafts leave the queue"


def test_a_draft_reads_back_whole_and_an_unknown_one_is_404(desk, api):
    add_drafts(desk, review_message("7", chat="Cold <b>pizza</b>"))
    draft = api.get("/api/drafts/7").json()
    assert (draft["chat_message"], draft["draft_reply"], draft["model_id"], draft["sentiment"]) == (
        "Cold <b>pizza</b>", DRAFT, MODEL, -1
    )
    assert draft["decision"] is None
    assert api.get("/api/drafts/8").status_code == 404
    assert api.post("/api/drafts/8/decision", json={"decision": "approve", "reviewer": "ana"}).status_code == 404


@pytest.mark.parametrize(
    ("body", "stored", "destinations"),
    [
        (
            {"decision": "approve"},
            {"decision": "approve", "final_text": DRAFT, "edit_distance": 0},
            {"bigquery", "replies"},
        ),
        (
            {"decision": "edit", "text": "Sorry about the cold pizza: a new one is on its way."},
            {"decision": "edit", "final_text": "Sorry about the cold pizza: a new one is on its way."},
            {"bigquery", "replies"},
        ),
        (
            {"decision": "reject", "reason": "other", "note": "asks about a different order"},
            {"decision": "reject", "final_text": None, "reason": "other", "note": "asks about a different order"},
            {"bigquery"},
        ),
        (
            {"decision": "reject", "reason": "wrong_sentiment", "sentiment": 0},
            {"decision": "reject", "reason": "wrong_sentiment", "corrected_sentiment": 0},
            {"bigquery"},
        ),
        (
            {"decision": "approve", "sentiment": 0},
            {"decision": "approve", "corrected_sentiment": 0},
            {"bigquery", "replies"},
        ),
        (
            # An "edit" that changes nothing counts as approved as drafted.
            {"decision": "edit", "text": DRAFT},
            {"decision": "approve", "edit_distance": 0},
            {"bigquery", "replies"},
        ),
    ],
)
def test_each_decision_is_stored_and_queued_for_its_outputs(desk, api, clock, body, stored, destinations):
    add_drafts(desk, review_message("1", minutes_after=0))
    response = api.post("/api/drafts/1/decision", json={**body, "reviewer": "ana"})
    assert response.status_code == 200, response.text
    decision = response.json()
    assert decision | stored == decision, decision
    assert decision["reviewer"] == "ana"
    assert decision["seconds_waited"] == 3600.0, "from the draft's making to the decision"

    outbox = _outbox(desk)
    assert {destination for _, destination in outbox} == destinations
    row = ReviewRow.model_validate(outbox[("1", "bigquery")])
    assert (row.chat_id, row.decision.value, row.reviewer, row.model_id, row.apology_prompt_version) == (
        "1", stored["decision"], "ana", MODEL, APOLOGY
    )
    assert row.final_text == decision["final_text"] and row.draft_text == DRAFT
    if "replies" in destinations:
        reply = ApprovedReply.model_validate(outbox[("1", "replies")])
        edited = decision["decision"] == "edit"
        assert (reply.chat_id, reply.text, reply.edited) == ("1", decision["final_text"], edited)


def test_an_edit_records_its_distance_from_the_draft(desk, api):
    add_drafts(desk, review_message("1", draft="Sorry for the delay."))
    body = {"decision": "edit", "text": "Sorry for the long delay.", "reviewer": "ana"}
    decision = api.post("/api/drafts/1/decision", json=body).json()
    assert decision["edit_distance"] == 5
    assert decision["normalized_edit_distance"] == pytest.approx(5 / len("Sorry for the long delay."))


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"decision": "maybe"},
        {"decision": "edit"},
        {"decision": "edit", "text": "   "},
        {"decision": "approve", "text": "changed"},
        {"decision": "reject"},
        {"decision": "reject", "reason": "other"},
        {"decision": "reject", "reason": "wrong_sentiment"},
        {"decision": "reject", "reason": "bored"},
        {"decision": "approve", "reason": "other", "note": "x"},
        {"decision": "approve", "sentiment": 2},
        {"decision": "approve", "sentiment": True},
        {"decision": "approve", "colour": "blue"},
    ],
)
def test_a_bad_body_is_422_and_changes_nothing(desk, api, body):
    add_drafts(desk, review_message("1"))
    assert api.post("/api/drafts/1/decision", json={**body, "reviewer": "ana"} if body else body).status_code == 422
    assert api.get("/api/drafts/1").json()["decision"] is None
    assert _outbox(desk) == {}


def test_without_a_reviewer_a_local_decision_is_422(desk, api):
    add_drafts(desk, review_message("1"))
    assert api.post("/api/drafts/1/decision", json={"decision": "approve"}).status_code == 422


def test_the_first_decision_stands_and_the_second_agent_is_told(desk, api):
    add_drafts(desk, review_message("1"))
    assert api.post("/api/drafts/1/decision", json={"decision": "approve", "reviewer": "ana"}).status_code == 200
    second = api.post(
        "/api/drafts/1/decision", json={"decision": "reject", "reason": "draft_unusable", "reviewer": "ben"}
    )
    assert second.status_code == 409
    assert second.json()["detail"]["decision"]["reviewer"] == "ana"
    assert api.get("/api/drafts/1").json()["decision"]["decision"] == "approve"
    assert set(_outbox(desk)) == {("1", "bigquery"), ("1", "replies")}, "nothing of the second decision went out"


def test_agents_deciding_at_the_same_moment_store_one_decision(desk, clock):
    add_drafts(desk, review_message("1"))
    start, results = threading.Barrier(6), []

    def agent(name: str) -> None:
        start.wait()
        with desk.sessions() as session:
            try:
                decision = decisions.decide(session, "1", DecisionRequest(decision="approve"), name, clock())
                results.append(decision.reviewer)
            except decisions.AlreadyDecided as conflict:
                results.append(("told", conflict.decision.reviewer))

    threads = [threading.Thread(target=agent, args=(f"agent-{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [result for result in results if isinstance(result, str)]
    assert len(winners) == 1 and len(results) == 6
    assert {result for result in results if isinstance(result, tuple)} == {("told", winners[0])}
    assert len(_outbox(desk)) == 2


def test_an_opened_draft_is_held_for_its_agent_for_a_few_minutes(desk, api, clock):
    add_drafts(desk, review_message("1"))
    with desk.sessions() as session:
        assert decisions.claim(session, "1", "ana", clock(), minutes=5).claimed_by == "ana"
        assert decisions.claim(session, "1", "ben", clock(), minutes=5).claimed_by == "ana", "ben cannot take it"
    refused = api.post("/api/drafts/1/decision", json={"decision": "approve", "reviewer": "ben"})
    assert refused.status_code == 409 and "claimed by ana" in refused.json()["detail"]["message"]
    clock.advance(minutes=6)
    assert api.post("/api/drafts/1/decision", json={"decision": "approve", "reviewer": "ben"}).status_code == 200


def test_stats_per_variant_with_wilson_intervals(desk, api, clock):
    add_drafts(desk, *[review_message(f"a{n}", draft="Sorry for the delay.") for n in range(4)],
               review_message("b1", apology="apology-v2"))
    for chat_id, body in [
        ("a0", {"decision": "approve"}),
        ("a1", {"decision": "edit", "text": "Sorry for the long delay."}),
        ("a2", {"decision": "reject", "reason": "not_a_complaint"}),
        ("a3", {"decision": "approve"}),
        ("b1", {"decision": "reject", "reason": "draft_unusable"}),
    ]:
        clock.advance(minutes=1)
        assert api.post(f"/api/drafts/{chat_id}/decision", json={**body, "reviewer": "ana"}).status_code == 200
    first, second = api.get("/api/stats").json()
    assert (first["apology_prompt_version"], first["decided"], second["apology_prompt_version"], second["decided"]) == (
        APOLOGY, 4, "apology-v2", 1
    )
    accepted = first["accepted"]
    # 2 of 4: Wilson's 95% interval is 0.150 to 0.850 (a textbook value).
    assert (accepted["count"], accepted["total"], accepted["share"]) == (2, 4, 0.5)
    assert (accepted["low"], accepted["high"]) == pytest.approx((0.1500, 0.8500), abs=5e-4)
    assert first["edited"]["count"] == 1 and first["mean_normalized_edit_distance"] == pytest.approx(5 / 25)
    assert first["rejected"]["count"] == 1
    assert {reason: r["count"] for reason, r in first["rejected_by_reason"].items()} == {
        "wrong_sentiment": 0, "draft_unusable": 0, "not_a_complaint": 1, "other": 0
    }
    # Decided 61, 62, 63 and 64 minutes after their drafts were made.
    assert first["median_seconds_to_decision"] == 62.5 * 60
    assert second["rejected_by_reason"]["draft_unusable"]["share"] == 1.0
