"""Streaming entry point: chats from Pub/Sub; rows to BigQuery, drafts and dead letters to Pub/Sub topics.

    python -m pipeline.run --input_subscription projects/P/subscriptions/S --bigquery_table P:D.T \\
        --review_topic projects/P/topics/R --dead_letter_topic projects/P/topics/D --model PRESET
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.graph import TriageChats
from pipeline.launch import Job, main
from pipeline.options import StreamingOptions, TriageOptions, VariantOptions
from pipeline.sinks import PublishRecords, WriteTriageRows
from pipeline.tags import CHECK, ERROR, MAIN, NEGATIVE


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
    (
        (outputs[NEGATIVE], outputs[CHECK])
        | "ForReview" >> beam.Flatten()
        | "PublishForReview" >> PublishRecords(options.review_topic)
    )
    (
        (outputs[ERROR], rejected)
        | "AllDeadLetters" >> beam.Flatten()
        | "PublishDeadLetters" >> PublishRecords(options.dead_letter_topic)
    )


JOB = Job(
    prog="python -m pipeline.run",
    description="The streaming job: chats from a Pub/Sub subscription; rows to BigQuery, drafts and dead letters "
    "to Pub/Sub topics.",
    options=(StreamingOptions, TriageOptions, VariantOptions),
    required=("input_subscription", "bigquery_table", "review_topic", "dead_letter_topic"),
    default_runner="BundleBasedDirectRunner",
    streaming=True,
)


def run(
    argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None, **bigquery_write_kwargs
) -> beam.runners.runner.PipelineResult:
    """Parses flags, builds the graph and starts the streaming job; returns its result handle.

    `bigquery_write_kwargs` are for the local stack (`local.stack`); the command line passes none.
    """

    def build(pipeline: beam.Pipeline, options: PipelineOptions, triage: TriageChats) -> None:
        build_pipeline(pipeline, options.view_as(StreamingOptions), triage, **bigquery_write_kwargs)

    return JOB.start(argv, build, test_pipeline)


if __name__ == "__main__":
    main(run)
