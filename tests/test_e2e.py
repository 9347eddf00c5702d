"""End to end on the local stack: the Pub/Sub emulator and bqemulator up, the streaming job running, chats
published, and every one of them found exactly once in BigQuery, on the review topic or on the dead-letter topic."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from local.job import StreamingJob, Tally, message_key
from local.stack import LocalStack
from pipeline.contracts import TriageRow
from pipeline.sinks import bigquery_schema
from review.checks import open_checks
from tests.review_support import add_drafts, desk_on
from tests.support import own_stack
from tests.tiny_gemma import APOLOGY_LESSON, lesson_chats

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "chats.jsonl"
MALFORMED = [
    b"not json", b"\xff\xfe not utf-8", b'{"id": "e2e-9", "user_id": 9}',
    b'{"id": "e2e-10", "user_id": 1, "chat_message": 42}',
]
# Cancelling waits for the runner's blocking pull (30 s) unless woken; the job must stop well before that.
CANCEL_LIMIT_SECS = 15


def _run_job(stack: LocalStack, project: str, model: str, payloads: list[bytes], timeout: float, *flags: str):
    """Runs the job on resources of its own until everything published is accounted for; returns the tally."""
    stack = own_stack(stack, project)
    job = StreamingJob(stack, model, "--share_model_across_processes=false", *flags)
    try:
        stack.publish(payloads)
        tally = Tally(stack, payloads)
        assert tally.wait(job, timeout), f"after {timeout:.0f} s: {tally.summary()}, missing {dict(tally.missing)}"
        time.sleep(3)  # anything written twice would show up now
        tally.poll()
    finally:
        cancel_secs = job.cancel()
    assert cancel_secs < CANCEL_LIMIT_SECS
    assert tally.accounted == tally.expected, "each published message exactly once"
    return tally, stack


def test_every_published_chat_lands_once_and_the_doubtful_ones_reach_the_desks_check_queue(
    stack, tiny_gemma, tmp_path
):
    payloads = [json.dumps(chat).encode() for chat in lesson_chats()] + MALFORMED
    # Every confidence is under 1: each positive and neutral chat is doubtful.
    tally, stack = _run_job(
        stack, "e2e-tiny", tiny_gemma, payloads, 120, "--max_length=384", "--apology_max_length=384",
        "--model_family=instruct",  # the prompts the tiny model learned
        "--check_below_confidence=1",
    )

    rows = {row["chat_id"]: row for row in tally.rows}
    assert {chat_id: row["sentiment"] for chat_id, row in rows.items()} == {"2": 1, "3": 0}
    assert {row["prompt_version"] for row in tally.rows} == {"triage-instruct-score-v1"}
    assert [(review["chat_id"], review["draft_reply"]) for review in tally.reviews] == [
        (APOLOGY_LESSON[0], APOLOGY_LESSON[3])
    ]
    stages = {(letter.chat_id, letter.stage.value) for letter in tally.dead_letters}
    assert stages == {("4", "triage_reply"), (None, "input"), ("e2e-9", "input"), ("e2e-10", "input")}
    kept = sorted(letter.payload_bytes() for letter in tally.dead_letters if letter.stage.value == "input")
    assert kept == sorted(MALFORMED), "bad input is kept byte for byte"

    table = stack.bigquery.get_table(f"{stack.resources.project}.{stack.resources.dataset}.{stack.resources.table}")
    assert [(f.name, f.field_type, f.mode) for f in table.schema] == [
        (f["name"], f["type"], f["mode"]) for f in bigquery_schema(TriageRow)["fields"]
    ], "the job created the table from the row contract"

    assert all(1 / 3 <= row["confidence"] <= 1 for row in rows.values())
    assert 1 / 3 <= tally.reviews[0]["confidence"] <= 1
    assert sorted((check["chat_id"], check["confidence"]) for check in tally.checks) == sorted(
        (chat_id, row["confidence"]) for chat_id, row in rows.items()
    ), "the doubtful chats keep their rows and are also sent to be checked"
    desk = desk_on(f"sqlite:///{tmp_path / 'desk.sqlite3'}")
    add_drafts(desk, *(json.dumps(check).encode() for check in tally.checks))
    with desk.sessions() as session:
        queued = sorted((check.chat_id, check.reason) for check in open_checks(session))
    assert queued == [("2", "low_confidence"), ("3", "low_confidence")]


@pytest.mark.slow
def test_sample_chats_on_the_real_gemma(stack, gemma3_preset):
    # Six of the samples (four chats, two malformed): the whole file takes about 15 minutes on two cores.
    lines = [line for line in SAMPLES.read_bytes().splitlines() if line.strip()]
    payloads = [line for line in lines if message_key(line) in {"1", "2", "3", "4", "90", "not a json line"}]
    assert len(payloads) == 6
    # Without the warm-up at load (the streaming job's default): on the 270M it runs every shape up to batch 8 × 768
    # first (about 4 minutes on two cores); test_handler checks it on the real model at small shapes.
    tally, _ = _run_job(stack, "e2e-gemma3", str(gemma3_preset), payloads, 600, "--warm_up=false")

    assert len(tally.rows) + len(tally.reviews) + len(tally.dead_letters) == len(payloads)
    assert {(letter.chat_id, letter.stage.value) for letter in tally.dead_letters} >= {(None, "input"), ("90", "input")}
    assert tally.rows, "the valid chats are triaged, not all dead-lettered"
    assert {row["model_id"] for row in tally.rows} == {Path(gemma3_preset).name}
    assert all(review["draft_reply"].strip() for review in tally.reviews), "every negative chat gets a draft"
