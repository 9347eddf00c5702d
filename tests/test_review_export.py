"""What agents decided, exported for evaluation and tuning, and a schema that migrations keep."""

from __future__ import annotations

import json

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient

from review import export
from review.app import create_app
from review.models import Base
from tests.review_support import Clock, add_drafts, desk_on, review_message
from training.evaluate import load_labeled


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'desk.sqlite3'}"


def test_decisions_become_labeled_rows_the_evaluation_reads_and_reply_pairs(database_url, tmp_path):
    desk = desk_on(database_url, Clock())
    add_drafts(desk, *[
        review_message(str(n), chat=f"chat {n}", variant="task-lora" if n == 1 else None) for n in range(6)
    ])
    with TestClient(create_app(desk)) as client:
        for chat_id, body in [
            ("0", {"decision": "approve"}),
            ("1", {"decision": "edit", "text": "Sorry! A new pizza is on its way."}),
            ("2", {"decision": "reject", "reason": "wrong_sentiment", "sentiment": 1}),
            ("3", {"decision": "reject", "reason": "not_a_complaint"}),
            ("4", {"decision": "reject", "reason": "draft_unusable"}),
        ]:
            assert client.post(f"/api/drafts/{chat_id}/decision", json={**body, "reviewer": "ana"}).status_code == 200

    output = tmp_path / "out" / "reviewed.jsonl"
    assert export.main(["--database_url", database_url, "--output", str(output)]) == 0

    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert rows == [
        {"id": "0", "text": "chat 0", "label": -1},
        {"id": "1", "text": "chat 1", "label": -1},
        {"id": "2", "text": "chat 2", "label": 1},
        {"id": "4", "text": "chat 4", "label": -1},
    ], "chat 3 has no sentiment the agent settled; chat 5 is not decided"
    read_back = [(chat["id"], label) for chat, label in load_labeled(str(output))]
    assert read_back == [("0", -1), ("1", -1), ("2", 1), ("4", -1)]
    pairs = [json.loads(line) for line in (tmp_path / "out" / "reviewed-pairs.jsonl").read_text().splitlines()]
    assert [(pair["id"], pair["chat"], pair["reply"], pair["edited"], pair["variant"]) for pair in pairs] == [
        ("0", "chat 0", "We are sorry your order arrived cold and late. We will refund the delivery fee.", False,
         "default"),
        ("1", "chat 1", "Sorry! A new pizza is on its way.", True, "task-lora"),
    ]


def test_the_migrations_build_exactly_the_models_schema(database_url):
    desk = desk_on(database_url)
    with desk.sessions.kw["bind"].connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == [], "a model change needs a migration"


def test_an_upgrade_on_a_desk_with_decisions_keeps_them(database_url):
    desk = desk_on(database_url, Clock())
    add_drafts(desk, review_message("1"), review_message("2"))
    with TestClient(create_app(desk)) as client:
        client.post("/api/drafts/1/decision", json={"decision": "approve", "reviewer": "ana"})
    restarted = desk_on(database_url)  # runs the migrations again, as each start does
    with TestClient(create_app(restarted)) as client:
        assert client.get("/api/drafts/1").json()["decision"]["reviewer"] == "ana"
        assert [draft["chat_id"] for draft in client.get("/api/queue").json()] == ["2"]
