"""The apology variants compared: the stats per variant, `python -m review.report` and `GET /api/stats/comparison`
on known counts, and drafts stored before variants existed."""

from __future__ import annotations

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import text

from review import report
from review.app import create_app
from review.comparison import sample_size
from review.db import alembic_config, make_engine
from tests.review_support import Clock, add_drafts, desk_on, review_message

# Fisher's tea-tasting table: 3 of 4 against 1 of 4, whose two-sided p-value is 0.486 (Fisher, 1935).
DECISIONS = {
    "few-shot": ["approve", "edit", "reject", "reject"],
    "task-lora": ["approve", "approve", "approve", "reject"],
}
BODIES = {
    "approve": {"decision": "approve"},
    "edit": {"decision": "edit", "text": "We are sorry. A new order is on its way."},
    "reject": {"decision": "reject", "reason": "draft_unusable"},
}


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'desk.sqlite3'}"


@pytest.fixture
def decided(database_url):
    """A desk whose agents decided four drafts of each variant, as DECISIONS says."""
    desk = desk_on(database_url, Clock())
    add_drafts(desk, *[
        review_message(f"{variant}-{n}", variant=variant, apology=f"apology-{variant}-v1")
        for variant, kinds in DECISIONS.items() for n in range(len(kinds))
    ])
    with TestClient(create_app(desk)) as client:
        for variant, kinds in DECISIONS.items():
            for n, kind in enumerate(kinds):
                response = client.post(f"/api/drafts/{variant}-{n}/decision", json={**BODIES[kind], "reviewer": "ana"})
                assert response.status_code == 200, response.text
    return desk


def test_the_sample_size_of_a_textbook_case():
    # 60% against 40%, two-sided 5%, 80% power: 97 per group (Fleiss, Statistical Methods for Rates and Proportions).
    assert sample_size(0.6, 0.4) == 97
    assert sample_size(0.4, 0.6) == 97
    assert sample_size(0.5, 0.5) is None


def test_the_stats_separate_the_variants(decided):
    with TestClient(create_app(decided)) as client:
        stats = {entry["variant"]: entry for entry in client.get("/api/stats").json()}
    assert {variant: (s["decided"], s["accepted"]["count"], s["edited"]["count"], s["rejected"]["count"])
            for variant, s in stats.items()} == {"few-shot": (4, 1, 1, 2), "task-lora": (4, 3, 0, 1)}
    assert stats["task-lora"]["apology_prompt_version"] == "apology-task-lora-v1"


def test_the_report_prints_the_variants_side_by_side_and_the_test(decided, database_url, capsys):
    assert report.main(["--database_url", database_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Decisions per apology variant; counts with their share and 95% Wilson interval."
    header, few_shot, task_lora = (line.split("  ") for line in lines[2:5])
    cells = [[cell.strip() for cell in row if cell.strip()] for row in (header, few_shot, task_lora)]
    assert cells[0] == ["variant", "model", "apology prompt", "decided", "accepted", "edited", "rejected"]
    # Wilson's 95% intervals: 1 of 4 is 4.6% to 69.9%, 2 of 4 is 15.0% to 85.0%, 3 of 4 is 30.1% to 95.4%.
    assert cells[1][3:] == ["4", "1 (25%, 5%-70%)", "1 (25%, 5%-70%)", "2 (50%, 15%-85%)"]
    assert cells[2][3:] == ["4", "3 (75%, 30%-95%)", "0 (0%, 0%-49%)", "1 (25%, 5%-70%)"]
    # 75% against 25% needs 15 decisions per variant at 80% power; each has 4, so 22 more in all.
    assert lines[6] == (
        "task-lora against few-shot: accepted +50.0 points; Fisher's exact test, two-sided: p = 0.486, not significant "
        "at alpha = 0.05. To find a difference this large (two-proportion z-test, equal groups, 80% power), 15 "
        "decisions per variant are needed: 22 more in all."
    )


def test_the_comparison_api_takes_a_baseline_and_refuses_an_unknown_one(decided):
    with TestClient(create_app(decided)) as client:
        comparison = client.get("/api/stats/comparison", params={"baseline": "task-lora"}).json()
        unknown = client.get("/api/stats/comparison", params={"baseline": "nope"})
    [test] = comparison["tests"]
    assert (test["variant"], test["baseline"], test["difference"], test["significant"]) == (
        "few-shot", "task-lora", -0.5, False
    )
    assert test["p_value"] == pytest.approx(0.4857, abs=1e-4)
    assert (test["decisions_per_variant"], test["more_decisions"]) == (15, 22)
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]


def test_a_large_difference_is_significant(database_url):
    desk = desk_on(database_url, Clock())
    add_drafts(desk, *[review_message(f"{v}-{n}", variant=v) for v in ("a", "b") for n in range(12)])
    with TestClient(create_app(desk)) as client:
        for n in range(12):
            client.post(f"/api/drafts/a-{n}/decision", json={**BODIES["approve"], "reviewer": "ana"})
            client.post(f"/api/drafts/b-{n}/decision", json={**BODIES["reject"], "reviewer": "ana"})
        [test] = client.get("/api/stats/comparison").json()["tests"]
    # 12 of 12 against 0 of 12: p = 2 / C(24, 12) = 7.4e-7.
    assert test["significant"] and test["p_value"] == pytest.approx(2 / 2_704_156)
    assert test["more_decisions"] == 0


def test_an_unknown_baseline_is_an_error_of_the_report(decided, database_url, capsys):
    assert report.main(["--database_url", database_url, "--baseline", "nope"]) == 2
    assert "no decisions on a variant named 'nope'" in capsys.readouterr().err


def test_drafts_stored_before_variants_become_the_default_variant(database_url):
    engine = make_engine(database_url)
    config = alembic_config(database_url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.execute(text(
            "INSERT INTO drafts (chat_id, user_id, chat_message, summary, draft_reply, model_id, "
            "triage_prompt_version, apology_prompt_version, processed_at, received_at) "
            "VALUES ('old', 'u', 'cold pizza', 'cold', 'Sorry.', 'm', 't', 'a', '2026-11-29 08:00:00', "
            "'2026-11-29 08:00:00')"
        ))
    desk = desk_on(database_url, Clock())  # upgrades to the newest migration, as each start does
    add_drafts(desk, review_message("new", variant="task-lora"))
    with TestClient(create_app(desk)) as client:
        assert client.get("/api/drafts/old").json()["variant"] == "default"
        assert client.get("/api/drafts/new").json()["variant"] == "task-lora"
