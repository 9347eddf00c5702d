"""Streaming entry point: chats from Pub/Sub; rows to BigQuery, drafts and dead letters to Pub/Sub topics.

    python -m pipeline.run --input_subscription projects/P/subscriptions/S --bigquery_table P:D.T \\
        --review_topic projects/P/topics/R --dead_letter_topic projects/P/topics/D --model PRESET
"""

from __future__ import annotations

import logging

import apache_beam as beam

from pipeline.dead_letters import ERROR
from pipeline.graph import TriageChats
from pipeline.options import StreamingOptions, TriageOptions, parse_options, require, use_default_model
from pipeline.sinks import PublishRecords, WriteTriageRows
from pipeline.triage import MAIN, NEGATIVE


def build_pipeline(
    pipeline: beam.Pipeline, options: StreamingOptions, triage: TriageChats, **bigquery_write_kwargs
) -> None:
    """Wires the shared triage graph between the streaming sources and sinks.

    `bigquery_write_kwargs` go to `WriteToBigQuery` as they are (the local stack points it at an emulator).
    """
    outputs = (
        pipeline
        | "ReadChats" >> beam.io.ReadFromPubSub(subscription=options.input_subscription, with_attributes=True)
        | "TriageChats" >> triage
    )
    rejected = outputs[MAIN] | "WriteToBigQuery" >> WriteTriageRows(options.bigquery_table, **bigquery_write_kwargs)
    outputs[NEGATIVE] | "PublishForReview" >> PublishRecords(options.review_topic)
    (
        (outputs[ERROR], rejected)
        | "AllDeadLetters" >> beam.Flatten()
        | "PublishDeadLetters" >> PublishRecords(options.dead_letter_topic)
    )


def run(
    argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None, **bigquery_write_kwargs
) -> beam.runners.runner.PipelineResult:
    """Parses flags, builds the graph and starts the streaming job; returns its result handle.

    `bigquery_write_kwargs` are for the local stack (`local.stack`); the command line passes none.
    """
    options = parse_options(argv, "BundleBasedDirectRunner", streaming=True)
    streaming, triage = options.view_as(StreamingOptions), options.view_as(TriageOptions)
    require(streaming, "input_subscription", "bigquery_table", "review_topic", "dead_letter_topic")
    use_default_model(triage)
    if triage.warm_up is None:
        # A stream must not stall on a compilation mid-flow; a batch job meets each shape once, and soon.
        triage.warm_up = True
    pipeline = test_pipeline or beam.Pipeline(options=options)
    build_pipeline(pipeline, streaming, TriageChats.from_options(triage), **bigquery_write_kwargs)
    return pipeline.run()


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    run().wait_until_finish()
