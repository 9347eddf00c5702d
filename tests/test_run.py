"""The streaming entry point wires every output of the shared graph to its sink."""

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import run
from pipeline.contracts import TriageRow
from pipeline.graph import TriageChats
from pipeline.options import StreamingOptions, TriageOptions
from pipeline.sinks import bigquery_schema
from tests.support import usage_error

FLAGS = [
    "--input_subscription=projects/food-chain/subscriptions/chats", "--bigquery_table=food-chain:support.triage",
    "--review_topic=projects/food-chain/topics/review", "--dead_letter_topic=projects/food-chain/topics/dead",
    "--model=/models/gemma",
]


def _sink_inputs(pipeline: beam.Pipeline) -> dict[str, set[str]]:
    """For each sink step, the names of the steps that feed it."""
    proto = pipeline.to_runner_api()
    producers = {
        pcoll: transform.unique_name
        for transform in proto.components.transforms.values()
        if not transform.subtransforms
        for pcoll in transform.outputs.values()
    }
    return {
        transform.unique_name: {producers.get(pcoll, "?") for pcoll in transform.inputs.values()}
        for transform in proto.components.transforms.values()
        if transform.unique_name in {"WriteToBigQuery", "ForReview", "PublishForReview", "PublishDeadLetters"}
    }


def test_streaming_graph_sends_each_output_to_its_sink():
    options = PipelineOptions(FLAGS, streaming=True)
    pipeline = beam.Pipeline(runner="BundleBasedDirectRunner", options=options)
    triage = TriageChats.from_options(options.view_as(TriageOptions))
    run.build_pipeline(pipeline, options.view_as(StreamingOptions), triage)

    feeds = _sink_inputs(pipeline)
    assert feeds["WriteToBigQuery"] == {"TriageChats/Triage/Gemma/ParseReplies/ParDo(ParseTriageReplyFn)"}
    # The review topic takes the drafts and the sentiment checks.
    assert feeds["PublishForReview"] == {"ForReview"}
    assert feeds["ForReview"] == {
        "TriageChats/DraftApologies/Gemma/ParseReplies/ParDo(ParseApologyFn)",
        "TriageChats/Triage/Gemma/ParseReplies/ParDo(ParseTriageReplyFn)",
    }
    assert feeds["PublishDeadLetters"] == {"AllDeadLetters"}


def test_missing_streaming_flags_are_a_usage_error(capsys):
    error = usage_error(capsys, lambda: run.run([flag for flag in FLAGS if not flag.startswith("--review_topic")]))
    assert "the following arguments are required: --review_topic" in error


def test_bigquery_schema_follows_the_row_contract():
    schema = bigquery_schema(TriageRow)
    assert [(f["name"], f["type"]) for f in schema["fields"]] == [
        ("chat_id", "STRING"), ("user_id", "STRING"), ("sentiment", "INTEGER"), ("summary", "STRING"),
        ("model_id", "STRING"), ("prompt_version", "STRING"), ("processed_at", "TIMESTAMP"), ("confidence", "FLOAT"),
    ]
    # A column added after tables were made must be NULLABLE: BigQuery adds no other kind (pipeline.sinks).
    assert [f["name"] for f in schema["fields"] if f["mode"] == "NULLABLE"] == ["confidence"]
