"""`python -m pipeline.replay`: dead letters of real runs, with injected failures, replayed from files and from the
emulator's subscription; the recoverable chats land once, the rest go back with their count raised or are parked."""

from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from handlers.gemma import GemmaModelHandler
from local.bigquery import EmulatorBigQueryClient
from local.job import StreamingJob, Tally
from local.stack import LocalStack
from pipeline import batch, replay
from pipeline.contracts import DeadLetter, LetterStatus, Stage, TriageRow
from pipeline.models import SHIPPED_TRIAGE_LORA
from pipeline.prompts import Family, SentimentMode, load_prompt, prompt_name
from pipeline.replay_plan import LatestPerChat
from pipeline.sinks import rejected_row
from tests.support import ExplodingHandler, own_stack, read_lines, triage_graph, usage_error, write_lines
from tests.tiny_gemma import APOLOGY_LESSON, lesson_chats

MALFORMED = [b"not json", b'{"id": "m-2", "user_id": 2}']
TINY_FLAGS = [
    "--max_length=384", "--apology_max_length=384", "--model_family=instruct", "--max_batch_size=1",
    "--share_model_across_processes=false",
]
# Chat 4's reply is invalid in both modes: the first run generates JSON, the replays score (the default).
INVALID_REPLY = "invalid reply: sentiment: Input should be a valid integer"
EMPTY_SUMMARY = "invalid reply: summary: String should have at least 1 character"


class FailingHandler(GemmaModelHandler):
    """The tiny Gemma, except that a batch holding one of `FAILING` raises, as a GPU out of memory would."""

    FAILING = ("burger", "Sunday", "Cold pizza, two hours late.")  # chats 2 and 3; chat 1's apology (its summary)

    def run_inference(self, batch, model, inference_args=None):
        if any(marker in prompt for prompt in batch for marker in self.FAILING):
            raise RuntimeError("RESOURCE_EXHAUSTED: out of memory (injected)")
        return super().run_inference(batch, model, inference_args)


@pytest.fixture(scope="module")
def first_run(tiny_gemma, tmp_path_factory) -> Path:
    """The error files of a batch run of the lesson chats and two malformed lines, with failing batches."""
    directory = tmp_path_factory.mktemp("first_run")
    source = write_lines(directory / "chats.jsonl", [*lesson_chats(), *MALFORMED])
    pipeline = TestPipeline(runner="FnApiRunner")
    triage = triage_graph(tiny_gemma, handler_cls=FailingHandler, min_batch_size=1, max_batch_size=1)
    batch.build_pipeline(pipeline, str(source), str(directory / "out"), triage)
    pipeline.run().wait_until_finish()
    return directory / "out"


def test_the_first_run_failed_in_every_way_a_replay_meets(first_run):
    stages = {(letter["chat_id"], letter["stage"]) for letter in read_lines(first_run, "error")}
    assert stages == {
        ("1", "apology_inference"), ("2", "triage_inference"), ("3", "triage_inference"), ("4", "triage_reply"),
        (None, "input"), ("m-2", "input"),
    }
    assert read_lines(first_run, "main") == [] and read_lines(first_run, "negative") == []


def test_replay_from_files_lands_the_recoverable_chats_and_counts_the_rest(first_run, tiny_gemma, tmp_path):
    out = tmp_path / "replay1"
    replay.run([
        "--input", str(first_run / "error*.jsonl"), "--output_dir", str(out), "--model", tiny_gemma, *TINY_FLAGS
    ])

    assert {row["chat_id"]: row["sentiment"] for row in read_lines(out, "main")} == {"2": 1, "3": 0}
    assert [(m["chat_id"], m["draft_reply"]) for m in read_lines(out, "negative")] == [
        (APOLOGY_LESSON[0], APOLOGY_LESSON[3])
    ]
    [again] = [DeadLetter.model_validate(letter) for letter in read_lines(out, "error")]
    assert (again.chat_id, again.stage, again.attempt, again.status) == ("4", Stage.TRIAGE_REPLY, 2, LetterStatus.RETRY)
    assert [(entry.attempt, entry.reason) for entry in again.history] == [(1, INVALID_REPLY)]
    assert again.reason == EMPTY_SUMMARY and again.prompt_version == "triage-instruct-score-v1"
    parked = [DeadLetter.model_validate(letter) for letter in read_lines(out, "parked")]
    assert sorted(letter.payload_bytes() for letter in parked) == sorted(MALFORMED), "bad input parked at once"
    assert {(letter.attempt, letter.status) for letter in parked} == {(1, LetterStatus.PARKED)}

    # The chat that keeps failing: its third attempt is its last, and it is parked with all three reasons.
    final = tmp_path / "replay2"
    replay.run(["--input", str(out / "error*.jsonl"), "--output_dir", str(final), "--model", tiny_gemma, *TINY_FLAGS])
    assert read_lines(final, "error") == [] and read_lines(final, "main") == []
    [last] = [DeadLetter.model_validate(letter) for letter in read_lines(final, "parked")]
    assert (last.chat_id, last.attempt, last.status) == ("4", 3, LetterStatus.PARKED)
    assert [entry.attempt for entry in last.history] == [1, 2]
    assert [entry.reason for entry in last.history] == [INVALID_REPLY, EMPTY_SUMMARY]

    # Replaying a parked letter changes nothing: it is passed on as it is, never tried again.
    again_parked = tmp_path / "replay3"
    replay.run(["--input", str(final / "parked*.jsonl"), "--output_dir", str(again_parked), "--model", tiny_gemma,
                *TINY_FLAGS])
    assert read_lines(again_parked, "parked") == read_lines(final, "parked")


def _sink_letter(chat_id: str) -> DeadLetter:
    """A dead letter for a row BigQuery refused, as the streaming job's sink writes it."""
    row = TriageRow(
        chat_id=chat_id, user_id="7", sentiment=1, summary="Liked the fries.", model_id="gemma2_instruct_2b_en",
        prompt_version="triage-instruct-score-v1", processed_at="2026-11-21T09:00:00Z",
    )
    return rejected_row(("p:support.triage", row.model_dump(mode="json"), [{"reason": "backendError"}]))


def test_a_rejected_row_is_written_again_without_the_model(tmp_path):
    letters = [_sink_letter("s-1"), _sink_letter("s-2").model_copy(update={"payload": '{"chat_id": "s-2"}'})]
    source = write_lines(tmp_path / "letters.jsonl", [letter.model_dump_json() for letter in letters])
    out = tmp_path / "out"
    # The model fails every batch (a chat that reached it would come back as a dead letter): rows must not reach it.
    pipeline = TestPipeline(runner="FnApiRunner")
    settings = replay.ReplaySettings(max_attempts=3, input_glob=str(source), output_dir=str(out))
    replay.build_pipeline(pipeline, settings, triage_graph("unused", handler_cls=ExplodingHandler))
    pipeline.run().wait_until_finish()

    [row] = read_lines(out, "main")
    assert (row["chat_id"], row["model_id"], row["summary"]) == ("s-1", "gemma2_instruct_2b_en", "Liked the fries.")
    [parked] = read_lines(out, "parked")
    assert parked["chat_id"] == "s-2" and "TriageRow contract" in parked["reason"] and parked["attempt"] == 2
    assert read_lines(out, "error") == []


def test_a_line_that_is_no_dead_letter_is_parked_as_it_is(tmp_path):
    letter = DeadLetter(payload='{"id": 5, "user_id": 1}', stage=Stage.INPUT, reason="chat_message: Field required")
    lines = [b"garbage", b"\xff\xfe", b'{"payload": "x"}', letter.model_dump_json().encode()]
    source = write_lines(tmp_path / "letters.jsonl", lines)
    pipeline = TestPipeline(runner="FnApiRunner")
    settings = replay.ReplaySettings(max_attempts=3, input_glob=str(source), output_dir=str(tmp_path / "out"))
    replay.build_pipeline(pipeline, settings, triage_graph("unused", handler_cls=ExplodingHandler))
    result = pipeline.run()
    result.wait_until_finish()

    parked = [DeadLetter.model_validate(line) for line in read_lines(tmp_path / "out", "parked")]
    assert sorted(letter.payload_bytes() for letter in parked) == sorted([*lines[:3], letter.payload.encode()])
    by_stage = {letter.stage: letter for letter in parked}
    assert by_stage[Stage.INPUT].reason == letter.reason, "a chat that was never valid keeps its reason"
    assert {letter.reason.split(":")[0] for letter in parked if letter.stage is Stage.REPLAY_INPUT} == {
        "not a dead letter"
    }
    assert _counter(result, "replay_unreadable") == 3


def _counter(result, name: str) -> int:
    [counter] = result.metrics().query(MetricsFilter().with_namespace("chat_triage").with_name(name))["counters"]
    return counter.committed


def test_only_the_latest_letter_of_a_chat_is_replayed():
    old = DeadLetter(payload="{}", stage=Stage.TRIAGE_REPLY, reason="r", chat_id="1")
    newer = old.model_copy(update={"reason": "again"}).retry_of(old)
    bad = DeadLetter(payload="x", stage=Stage.INPUT, reason="not JSON")
    with TestPipeline(runner="FnApiRunner") as pipeline:
        latest = pipeline | beam.Create([old, newer, bad, bad]) | LatestPerChat()
        assert_that(latest | beam.Map(lambda letter: (letter.chat_id, letter.attempt)), equal_to([("1", 2), (None, 1)]))


def test_old_dead_letters_stillread_lines():
    old = {"payload": "{}", "stage": "triage_reply", "reason": "r", "chat_id": "1", "attempt": 1,
           "failed_at": "2026-11-20T10:00:00Z"}
    letter = DeadLetter.model_validate(old)
    assert (letter.status, letter.history) == (LetterStatus.RETRY, ())


@pytest.mark.parametrize(("flags", "message"), [
    (["--output_dir=out"], "give one of --input"),
    (["--input=a", "--input_subscription=projects/p/subscriptions/s", "--output_dir=out"], "give one of --input"),
    (["--input=a", "--bigquery_table=p:d.t"],
     "the sinks are required: --review_topic, --dead_letter_topic, --parked_topic"),
    (["--input=a", "--output_dir=out", "--max_attempts=0"], "--max_attempts must be at least 1"),
    (["--input=a", "--output_dir=out", "--parked_topic=projects/p/topics/t"], "not both"),
])
def test_flags_that_cannot_work_are_a_usage_error(flags, message, capsys):
    assert message in usage_error(capsys, lambda: replay.run([*flags, "--model=unused"]))


INSERTED_IDS: list[list[str]] = []


class RecordingBigQueryClient(EmulatorBigQueryClient):
    """The local stack's BigQuery client, noting the insert ids of each streaming insert (bqemulator ignores them).

    The sink's DoFn works on an unpickled copy in the same process, so the ids go to a module-level list.
    """

    def insert_rows_json(self, *args, row_ids=None, **kwargs):
        INSERTED_IDS.append(list(row_ids))
        return super().insert_rows_json(*args, row_ids=row_ids, **kwargs)


def _pull_all(stack: LocalStack, subscription: str) -> list:
    messages, batch = [], stack.pull(subscription)
    while batch:
        messages += batch
        batch = stack.pull(subscription)
    return messages


def _replay_from(stack: LocalStack, subscription: str, model: str, *flags: str):
    names = stack.resources
    client = RecordingBigQueryClient(stack.bigquery_endpoint, names.project)
    return replay.run([
        f"--input_subscription={subscription}", f"--bigquery_table={names.bigquery_table}",
        f"--review_topic={names.review_topic}", f"--dead_letter_topic={names.dead_letter_topic}",
        f"--parked_topic={names.parked_topic}", f"--model={model}", *flags,
    ], test_client=client)


def test_replay_drains_the_emulator_subscription_and_lands_each_chat_once(stack, tiny_gemma):
    stack = own_stack(stack, "replay-tiny")
    names = stack.resources
    drain = names.subscription("dead-letter-drain")
    stack.subscriber.create_subscription(name=drain, topic=names.dead_letter_topic, ack_deadline_seconds=60)

    # The real streaming job, with a max_length too short for any prompt: every chat is a dead letter.
    payloads = [json.dumps(chat).encode() for chat in lesson_chats()] + MALFORMED
    job = StreamingJob(stack, tiny_gemma, "--share_model_across_processes=false", "--model_family=instruct",
                       "--max_length=64", "--warm_up=false")
    try:
        stack.publish(payloads)
        tally = Tally(stack, payloads)
        assert tally.wait(job, 120), tally.summary()
    finally:
        job.cancel()
    assert {(letter.chat_id, letter.stage) for letter in tally.dead_letters} == {
        *((chat_id, Stage.TRIAGE_REPLY) for chat_id in "1234"), (None, Stage.INPUT), ("m-2", Stage.INPUT)
    }
    assert all("leaves no room" in letter.reason for letter in tally.dead_letters if letter.stage is Stage.TRIAGE_REPLY)
    # A row BigQuery refused, as the sink dead-letters it (bqemulator cannot be made to refuse one).
    sink_letter = _sink_letter("s-1")
    stack.publisher.publish(names.dead_letter_topic, sink_letter.model_dump_json().encode(), chat_id="s-1").result()
    originals = [*tally.dead_letters, sink_letter]
    # dead-letter-replay (the Tally's) hears the topic too: empty it, so what follows is the replay's alone.
    assert len(_pull_all(stack, names.dead_letter_subscription)) == 1

    # Replayed with room to answer: the recoverable chats land, chat 4 goes back, bad input is parked.
    INSERTED_IDS.clear()
    _replay_from(stack, drain, tiny_gemma, *TINY_FLAGS)
    rows = stack.rows()
    assert sorted((row["chat_id"], row["sentiment"], row["model_id"]) for row in rows) == [
        ("2", 1, Path(tiny_gemma).name), ("3", 0, Path(tiny_gemma).name), ("s-1", 1, "gemma2_instruct_2b_en"),
    ]
    assert sorted(chat_id for ids in INSERTED_IDS for chat_id in ids) == ["2", "3", "s-1"], "chat ids as insert ids"
    assert [message.attributes["chat_id"] for message in _pull_all(stack, names.review_subscription)] == ["1"]
    [again] = [DeadLetter.model_validate_json(m.data) for m in _pull_all(stack, names.dead_letter_subscription)]
    assert (again.chat_id, again.attempt, again.status) == ("4", 2, LetterStatus.RETRY)
    assert "leaves no room" in again.history[0].reason and again.reason == EMPTY_SUMMARY
    parked = [DeadLetter.model_validate_json(m.data) for m in _pull_all(stack, names.parked_subscription)]
    assert sorted(letter.payload_bytes() for letter in parked) == sorted(MALFORMED)

    # The same dead letters once more (a replay after a seek back to a snapshot): no row is added, and chat 4's
    # newest letter (attempt 2, on the drained subscription since the first replay) is the one tried.
    for letter in originals:
        stack.publisher.publish(names.dead_letter_topic, letter.model_dump_json().encode()).result()
    assert len(_pull_all(stack, names.dead_letter_subscription)) == len(originals)
    INSERTED_IDS.clear()
    _replay_from(stack, drain, tiny_gemma, *TINY_FLAGS)
    assert sorted(row["chat_id"] for row in stack.rows()) == ["2", "3", "s-1"]
    assert INSERTED_IDS == [], "chats already in the table are not written again"
    # The review topic cannot be asked what it holds: a negative chat is drafted again (README: review consumers
    # deduplicate on the chat_id attribute).
    assert [message.attributes["chat_id"] for message in _pull_all(stack, names.review_subscription)] == ["1"]
    assert _pull_all(stack, names.dead_letter_subscription) == []
    last = {letter.chat_id: letter for letter in
            (DeadLetter.model_validate_json(m.data) for m in _pull_all(stack, names.parked_subscription))}
    assert (last["4"].attempt, last["4"].status) == (3, LetterStatus.PARKED)
    assert _pull_all(stack, drain) == [], "the drain read everything, and nothing it wrote came back in the same run"


@pytest.mark.slow
def test_the_default_model_replays_dead_letters_of_a_failed_batch(first_run, tmp_path):
    # Two chats whose batch failed in the first run, replayed on the default models (no --model): the shipped LoRAs.
    letters = [letter for letter in read_lines(first_run, "error") if letter["chat_id"] in {"2", "3"}]
    assert {letter["stage"] for letter in letters} == {"triage_inference"}
    source = write_lines(tmp_path / "letters.jsonl", letters)
    out = tmp_path / "out"
    replay.run(["--input", str(source), "--output_dir", str(out), "--max_batch_size=2",
                "--share_model_across_processes=false"])

    landed = [(row["chat_id"], row["model_id"], row["prompt_version"]) for row in read_lines(out, "main")]
    landed += [(m["chat_id"], m["model_id"], m["triage_prompt_version"]) for m in read_lines(out, "negative")]
    task = load_prompt(prompt_name("triage", Family.TASK, SentimentMode.SCORE)).version
    assert sorted(landed) == [("2", SHIPPED_TRIAGE_LORA.name, task), ("3", SHIPPED_TRIAGE_LORA.name, task)]
    assert read_lines(out, "error") == [] and read_lines(out, "parked") == []
