"""The streaming job on the local stack under attack: generated bad input, sinks that go away for a moment, and
a restart on the same subscription. Every published message must end in exactly one output."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import pytest

from local.job import StreamingJob, Tally
from tests.payloads import sample_payloads
from tests.support import own_stack
from tests.tiny_gemma import lesson_chats

# The prompts the tiny model learned, and lengths that hold them.
# No warm-up: these tests are about faults, and warming every shape would add a minute to each job (test_e2e and
# test_handler cover it).
TINY_FLAGS = (
    "--max_length=384", "--apology_max_length=384", "--model_family=instruct", "--share_model_across_processes=false",
    "--warm_up=false",
)


def _wave(name: str) -> list[bytes]:
    """The taught chats under ids of their own: one row of each sentiment, a draft, and an invalid reply."""
    return [json.dumps({**chat, "id": f"{name}-{chat['id']}"}).encode() for chat in lesson_chats()]


def _settle(tally: Tally, job: StreamingJob, timeout: float) -> None:
    """Waits until every message expected is accounted for, then a little longer for anything written twice."""
    assert tally.wait(job, timeout), f"after {timeout:.0f} s: {tally.summary()}, missing {dict(tally.missing)}"
    time.sleep(3)
    tally.poll()
    assert tally.accounted == tally.expected, "each published message exactly once"


def test_generated_bad_input_through_the_streaming_job(stack, tiny_gemma):
    # Pub/Sub refuses empty messages, so those never reach the job.
    payloads = [payload for payload in sample_payloads(60) if payload]
    stack = own_stack(stack, "faults-input")
    # With a timeout, as production should run: each batch in Beam's timeout thread, the model loaded inside it.
    job = StreamingJob(stack, tiny_gemma, *TINY_FLAGS, "--inference_timeout_secs=300")
    try:
        stack.publish(payloads)
        tally = Tally(stack, payloads)
        _settle(tally, job, 240)
    finally:
        job.cancel()
    stages = {letter.stage.value for letter in tally.dead_letters}
    assert "input" in stages and tally.rows, "bad input dead-lettered, good input triaged"


def test_sinks_that_go_away_for_a_moment_lose_nothing(stack, tiny_gemma):
    stack = own_stack(stack, "faults-sinks")
    job = StreamingJob(stack, tiny_gemma, *TINY_FLAGS)
    try:
        stack.publish(_wave("before"))
        tally = Tally(stack, _wave("before"))
        _settle(tally, job, 180)  # the table exists now; the job has written to it

        # BigQuery stopped while a wave is triaged and written, then started again with its data.
        outage = threading.Thread(target=stack.bigquery_outage, args=(8,))
        outage.start()
        time.sleep(1)
        stack.publish(_wave("bigquery-down"))
        tally.expect(_wave("bigquery-down"))
        outage.join()
        back_at = datetime.now(UTC)
        # Pub/Sub (input, review and dead-letter topics) frozen while a wave is on its way out.
        stack.publish(_wave("pubsub-frozen"))
        tally.expect(_wave("pubsub-frozen"))
        time.sleep(2)
        stack.pubsub_freeze(6)
        _settle(tally, job, 180)
    finally:
        job.cancel()
    assert sorted(row["chat_id"] for row in tally.rows) == sorted(
        f"{wave}-{chat_id}" for wave in ("before", "bigquery-down", "pubsub-frozen") for chat_id in ("2", "3")
    )
    assert sorted(review["chat_id"] for review in tally.reviews) == ["before-1", "bigquery-down-1", "pubsub-frozen-1"]
    triaged_while_down = [row for row in tally.rows if row["chat_id"].startswith("bigquery-down")]
    assert all(row["processed_at"] < back_at for row in triaged_while_down), "rows made while BigQuery was down"


IN_FLIGHT = "[in flight]"


@pytest.fixture
def model_stuck_on_marked_chats(monkeypatch):
    """Holds every batch with a chat marked IN_FLIGHT inside the model until released; yields (entered, release)."""
    from handlers.generator import KerasHubGenerator

    entered, release = threading.Event(), threading.Event()
    generate = KerasHubGenerator.generate

    def stuck(self, prompts, *args, **kwargs):
        if any(IN_FLIGHT in prompt for prompt in prompts):
            entered.set()
            release.wait(120)
        return generate(self, prompts, *args, **kwargs)

    monkeypatch.setattr(KerasHubGenerator, "generate", stuck)
    yield entered, release
    release.set()


def test_a_restarted_job_accounts_for_everything_published_before_between_and_after(
    stack, tiny_gemma, model_stuck_on_marked_chats
):
    """...and loses what the DirectRunner had read when it was cancelled: its Pub/Sub read acknowledges on read."""
    entered, release = model_stuck_on_marked_chats
    stack = own_stack(stack, "faults-restart")
    first = StreamingJob(stack, tiny_gemma, *TINY_FLAGS)
    try:
        stack.publish(_wave("before"))
        tally = Tally(stack, _wave("before"))
        _settle(tally, first, 180)
        in_flight = [json.dumps({**json.loads(chat), "chat_message": f"{IN_FLIGHT} {json.loads(chat)['chat_message']}"})
                     .encode() for chat in _wave("during")]
        stack.publish(in_flight)
        assert entered.wait(60), "the job read the marked chats"
    finally:
        # Cancelled while the model works on them: the batch finishes after the runner was told to stop.
        stopper = threading.Thread(target=first.cancel)
        stopper.start()
        time.sleep(2)
        release.set()
        stopper.join()
    # While no job runs, messages wait on the subscription: nothing acknowledges them.
    stack.publish(_wave("between"))
    tally.expect(_wave("between"))
    second = StreamingJob(stack, tiny_gemma, *TINY_FLAGS)
    try:
        stack.publish(_wave("after"))
        tally.expect(_wave("after"))
        _settle(tally, second, 180)
    finally:
        second.cancel()
    rows = [row["chat_id"] for row in tally.rows]
    assert sorted(rows) == sorted(f"{wave}-{i}" for wave in ("before", "between", "after") for i in ("2", "3"))
    assert not any("wake up" in letter.payload for letter in tally.dead_letters), "cancel's wake-ups never processed"
    # The truth the README states: on the DirectRunner, what was read before the cancel is gone. Dataflow keeps
    # it only when the job is drained or updated, never when it is cancelled.
    assert not any(key.startswith("during-") for key in tally.accounted), "in flight at the cancel: lost"
