"""End to end on the real local model: the streaming job's drafts reach the review desk through the review topic,
and an agent's decision reaches BigQuery and the replies topic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from local.job import StreamingJob, Tally, message_key
from local.stack import LocalStack
from pipeline.models import SHIPPED_APOLOGY_LORA
from review.app import create_app
from tests.review_support import desk_on, wait_for

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "chats.jsonl"
# Two plainly unhappy customers: the shipped model triages both as negative (README's held-out figures).
COMPLAINTS = {"4", "8"}


@pytest.mark.slow
def test_the_streaming_jobs_drafts_reach_the_desk_and_a_decision_reaches_bigquery(tmp_path_factory):
    payloads = [line for line in SAMPLES.read_bytes().splitlines() if line.strip() and message_key(line) in COMPLAINTS]
    with LocalStack.start(workdir=tmp_path_factory.mktemp("stack")) as stack:
        stack.create_resources()
        names = stack.resources
        desk = desk_on(
            f"sqlite:///{tmp_path_factory.mktemp('desk') / 'desk.sqlite3'}",
            subscription=names.review_desk_subscription,
            replies_topic=names.replies_topic, bigquery_table=names.reviews_table_name, subscriber=stack.subscriber,
            publisher=stack.publisher, bigquery=stack.bigquery,
        )
        with TestClient(create_app(desk)) as client:
            job = StreamingJob(stack, None, "--share_model_across_processes=false", "--warm_up=false")
            try:
                stack.publish(payloads)
                tally = Tally(stack, payloads)
                assert tally.wait(job, 900), f"{tally.summary()}, missing {dict(tally.missing)}"
            finally:
                job.cancel()
            drafted = {review["chat_id"]: review for review in tally.reviews}
            assert drafted, f"no chat was triaged as negative: {tally.summary()}"

            def all_drafts():
                queue = client.get("/api/queue").json()
                return queue if len(queue) == len(drafted) else None

            queue = wait_for(all_drafts, 30, what="every draft in the desk")
            assert {draft["chat_id"]: draft["draft_reply"] for draft in queue} == {
                chat_id: review["draft_reply"] for chat_id, review in drafted.items()
            }, "every draft the job wrote is in the desk, as written"
            chat_id = queue[0]["chat_id"]
            assert queue[0]["model_id"] == SHIPPED_APOLOGY_LORA.name and queue[0]["apology_prompt_version"]

            decision = client.post(f"/api/drafts/{chat_id}/decision", json={"decision": "approve", "reviewer": "ana"})
            assert decision.status_code == 200
            rows = wait_for(lambda: stack.rows(names.reviews_table), 30, what="the decision's BigQuery row")
            assert [(row["chat_id"], row["decision"], row["final_text"]) for row in rows] == [
                (chat_id, "approve", drafted[chat_id]["draft_reply"])
            ]
            replies = wait_for(lambda: stack.pull(names.replies_subscription), 30, what="the approved reply")
            assert [(m.attributes["chat_id"], json.loads(m.data)["text"]) for m in replies] == [
                (chat_id, drafted[chat_id]["draft_reply"])
            ]
