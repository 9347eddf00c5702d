"""The triage graph on a real runner with the taught tiny Gemma: every chat ends in exactly one output."""

import json
import shutil
from datetime import UTC, datetime

import apache_beam as beam
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from pipeline.contracts import Stage
from pipeline.options import TriageOptions
from pipeline.sinks import to_pubsub_message
from tests.support import ExplodingHandler, triage_graph
from tests.tiny_gemma import APOLOGY_LESSON, SCORE_PROMPT, lesson_chats

BAD_PAYLOADS = [
    b"not json", b"\xff\xfe", b"[1, 2]", b'{"id": 9, "user_id": 9}', b'{"id": 10, "user_id": 1, "chat_message": ""}'
]
# The chat id of each bad payload, where it had one: dead letters keep it for filtering and replay.
BAD_PAYLOAD_IDS = [None, None, None, "9", "10"]


def _payloads() -> list[bytes]:
    return [json.dumps(chat).encode() for chat in lesson_chats()] + BAD_PAYLOADS


def _counter(result, namespace: str, name: str) -> int:
    [counter] = result.metrics().query(MetricsFilter().with_namespace(namespace).with_name(name))["counters"]
    return counter.committed


def test_routes_each_reply_to_main_negative_or_error(tiny_gemma):
    pipeline = TestPipeline(runner="FnApiRunner")
    outputs = pipeline | beam.Create(_payloads()) | triage_graph(tiny_gemma, min_batch_size=4, max_batch_size=4)
    main = outputs["main"] | "MainIds" >> beam.Map(lambda row: (row.chat_id, row.sentiment, row.prompt_version))
    review = outputs["negative"] | "Drafts" >> beam.Map(lambda m: (m.chat_id, m.summary, m.draft_reply))
    errors = outputs["error"] | "ErrorStages" >> beam.Map(lambda d: (d.chat_id, d.stage))
    version = "triage-instruct-generate-v1"
    assert_that(main, equal_to([("2", 1, version), ("3", 0, version)]), label="main")
    assert_that(review, equal_to([APOLOGY_LESSON[:1] + APOLOGY_LESSON[2:]]), label="negative")
    expected_errors = [("4", Stage.TRIAGE_REPLY)] + [(chat_id, Stage.INPUT) for chat_id in BAD_PAYLOAD_IDS]
    assert_that(errors, equal_to(expected_errors), label="error")

    result = pipeline.run()
    result.wait_until_finish()
    assert _counter(result, "triage_model", "prompts") == 4
    assert _counter(result, "triage_model", "generate_calls") == 1, "the whole batch goes to one generate()"
    assert _counter(result, "chat_triage", "chats_rejected") == len(BAD_PAYLOADS)


def test_an_invalid_reply_keeps_the_raw_text_and_the_chat(tiny_gemma):
    with TestPipeline(runner="FnApiRunner") as pipeline:
        errors = (
            pipeline | beam.Create([json.dumps(lesson_chats()[3]).encode()]) | triage_graph(tiny_gemma)
        )["error"]
        assert_that(
            errors | beam.Map(lambda d: (d.reason, d.raw_output.startswith("Sure!"), json.loads(d.payload)["id"])),
            equal_to([("invalid reply: sentiment: Input should be a valid integer", True, "4")]),
        )


def test_scoring_mode_picks_the_sentiment_and_keeps_a_bad_summary(tiny_gemma):
    pipeline = TestPipeline(runner="FnApiRunner")
    payloads = [json.dumps(chat).encode() for chat in lesson_chats()]
    outputs = pipeline | beam.Create(payloads) | triage_graph(tiny_gemma, triage_prompt=SCORE_PROMPT, max_batch_size=4)
    main = outputs["main"] | "Main" >> beam.Map(lambda row: (row.chat_id, row.sentiment, row.summary))
    review = outputs["negative"] | "Drafts" >> beam.Map(lambda m: (m.chat_id, m.summary, m.triage_prompt_version))
    errors = outputs["error"] | "Errors" >> beam.Map(lambda d: (d.chat_id, d.stage, d.reason))
    assert_that(
        main, equal_to([("2", 1, "The customer loved the burger."), ("3", 0, "Asked about Sunday hours.")]),
        label="main",
    )
    assert_that(
        review, equal_to([("1", "Cold pizza, two hours late.", "triage-instruct-score-v1")]), label="negative"
    )
    reason = "invalid reply: summary: String should have at least 1 character"
    assert_that(errors, equal_to([("4", Stage.TRIAGE_REPLY, reason)]), label="error")
    pipeline.run().wait_until_finish()


def test_a_failing_model_dead_letters_each_chat_of_the_batch():
    with TestPipeline(runner="FnApiRunner") as pipeline:
        outputs = pipeline | beam.Create(_payloads()) | triage_graph("unused", handler_cls=ExplodingHandler)
        errors = outputs["error"] | beam.Filter(lambda d: d.stage == Stage.TRIAGE_INFERENCE)
        assert_that(
            errors | beam.Map(lambda d: (d.chat_id, "out of memory" in d.reason, d.model_id)),
            equal_to([(chat["id"], True, "unused") for chat in lesson_chats()]),
            label="dead letters",
        )
        assert_that(outputs["main"], equal_to([]), label="no rows")


def test_streaming_graph_on_a_test_stream(tiny_gemma):
    messages = [
        PubsubMessage(payload, {}, message_id=f"m{i}", publish_time=datetime(2026, 11, 21, 9, i, tzinfo=UTC))
        for i, payload in enumerate(_payloads())
    ]
    stream = TestStream().advance_watermark_to(0)
    for i, message in enumerate(messages):
        stream = stream.add_elements([TimestampedValue(message, i)]).advance_processing_time(1)
    stream = stream.advance_watermark_to_infinity()

    options = PipelineOptions(streaming=True)
    with TestPipeline(runner="BundleBasedDirectRunner", options=options) as pipeline:
        outputs = pipeline | stream | triage_graph(tiny_gemma)
        published = {
            name: outputs[name] | f"Publish_{name}" >> beam.Map(to_pubsub_message)
            for name in ("main", "negative", "error")
        }
        assert_that(
            published["main"] | beam.Map(lambda m: m.attributes["chat_id"]), equal_to(["2", "3"]), label="main"
        )
        assert_that(
            published["negative"] | beam.Map(lambda m: json.loads(m.data)["draft_reply"]),
            equal_to([APOLOGY_LESSON[3]]),
            label="negative",
        )
        assert_that(
            published["error"] | beam.Map(lambda m: m.attributes.get("chat_id")),
            equal_to(["4", *BAD_PAYLOAD_IDS]),
            label="error",
        )


def test_boolean_flags_take_only_true_or_false():
    options = PipelineOptions(["--share_model_across_processes=false"]).view_as(TriageOptions)
    assert options.share_model_across_processes is False
    with pytest.raises(SystemExit):
        PipelineOptions(["--share_model_across_processes=yes"]).view_as(TriageOptions)


def test_triage_and_apologies_of_one_preset_load_one_model_per_worker(tiny_gemma, tmp_path):
    # A preset path of its own: the tag follows the preset, and a model another test loaded under it would be reused.
    preset = shutil.copytree(tiny_gemma, tmp_path / "tiny_gemma")
    pipeline = TestPipeline(runner="FnApiRunner")
    outputs = pipeline | beam.Create(_payloads()) | triage_graph(str(preset), share_across_processes=True)
    assert_that(outputs["negative"] | beam.Map(lambda m: m.chat_id), equal_to(["1"]), label="a draft")
    result = pipeline.run()
    result.wait_until_finish()
    loads = result.metrics().query(MetricsFilter().with_name("load_model_latency_milli_secs"))["distributions"]
    assert sum(d.committed.count for d in loads) == 1, "the apology step reuses the triage step's model"
