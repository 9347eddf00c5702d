"""Replay entry point (batch): dead letters in, through the triage graph again, into the jobs' sinks or files.

    python -m pipeline.replay --input 'out/error*.jsonl' --output_dir out/replay [--model PRESET] [--max_attempts 3]
    python -m pipeline.replay --input_subscription projects/P/subscriptions/DL --bigquery_table P:D.T \\
        --review_topic projects/P/topics/R --dead_letter_topic projects/P/topics/DL \\
        --parked_topic projects/P/topics/PARKED [--model PRESET]

Dead letters come from JSON Lines files (`--input`) or from a subscription, drained until empty. Outputs: rows,
review messages, dead letters that may be retried again (attempt raised, history kept) and parked letters
(final), as files in `--output_dir` or to BigQuery and the three topics. In sink mode, chats already in the
table are skipped, so a replay never adds a second row for a chat.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.coders import BytesCoder
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.backlog import ReadBacklog
from pipeline.graph import TriageChats
from pipeline.launch import Job, main
from pipeline.options import BatchOptions, ReplayOptions, StreamingOptions, TriageOptions, VariantOptions
from pipeline.replay_plan import CHATS, PARKED, ROWS, LatestPerChat, NextAttempts, ParseDeadLetterFn, PlanReplayFn
from pipeline.sinks import LandedChatIds, PublishRecords, WriteJsonLines, WriteTriageRows
from pipeline.tags import CHECK, ERROR, MAIN, NEGATIVE

SINK_FLAGS = ("bigquery_table", "review_topic", "dead_letter_topic", "parked_topic")


@dataclass(frozen=True)
class ReplaySettings:
    """Where dead letters come from and where results go: a file glob or a subscription; a folder or the sinks."""

    max_attempts: int
    input_glob: str | None = None
    input_subscription: str | None = None
    output_dir: str | None = None
    bigquery_table: str | None = None
    review_topic: str | None = None
    dead_letter_topic: str | None = None
    parked_topic: str | None = None

    @classmethod
    def from_options(cls, options: PipelineOptions) -> ReplaySettings:
        """The settings of the flags; `ValueError` naming what is missing or contradictory."""
        batch, streaming = options.view_as(BatchOptions), options.view_as(StreamingOptions)
        replay = options.view_as(ReplayOptions)
        if bool(batch.input) == bool(streaming.input_subscription):
            raise ValueError("give one of --input (dead-letter files) or --input_subscription (to drain)")
        sink_flags = options.view_as(_SinkFlags)
        missing = [f"--{name}" for name in SINK_FLAGS if not getattr(sink_flags, name)]
        if not batch.output_dir and missing:
            raise ValueError(f"without --output_dir, the sinks are required: {', '.join(missing)}")
        if batch.output_dir and len(missing) < len(SINK_FLAGS):
            raise ValueError("give --output_dir or the sinks (--bigquery_table, ...), not both")
        if replay.max_attempts < 1:
            raise ValueError(f"--max_attempts must be at least 1, got {replay.max_attempts}")
        sinks = {} if batch.output_dir else {name: getattr(sink_flags, name) for name in SINK_FLAGS}
        return cls(
            max_attempts=replay.max_attempts, input_glob=batch.input,
            input_subscription=streaming.input_subscription, output_dir=batch.output_dir, **sinks,
        )


class _SinkFlags(StreamingOptions, ReplayOptions):
    """A view holding the sink flags of both classes, so that every missing one is named at once."""


def read_dead_letters(pipeline: beam.Pipeline, settings: ReplaySettings):
    """Raw lines (bad UTF-8 included) or message data, as bytes."""
    if settings.input_glob:
        return (
            pipeline
            | "ReadDeadLetters" >> beam.io.ReadFromText(settings.input_glob, coder=BytesCoder())
            | "SkipBlankLines" >> beam.Filter(lambda line: line.strip())
        )
    return pipeline | "DrainDeadLetters" >> ReadBacklog(settings.input_subscription)


def build_pipeline(
    pipeline: beam.Pipeline, settings: ReplaySettings, triage: TriageChats, **bigquery_write_kwargs
) -> None:
    """Wires the replay: plan, skip what has landed, triage or rewrite, next attempts, outputs.

    `bigquery_write_kwargs` go to the BigQuery write and lookup as they are (the local stack's `test_client`).
    """
    parsed = read_dead_letters(pipeline, settings) | "ParseDeadLetters" >> beam.ParDo(
        ParseDeadLetterFn()
    ).with_outputs(PARKED, main="letters")
    plan = (
        parsed.letters
        | "LatestPerChat" >> LatestPerChat()
        | "Plan" >> beam.ParDo(PlanReplayFn(settings.max_attempts)).with_outputs(CHATS, ROWS, PARKED)
    )
    chats, rows = plan[CHATS], plan[ROWS]
    if settings.bigquery_table:
        chats, rows = _skip_landed(chats, rows, settings.bigquery_table, bigquery_write_kwargs.get("test_client"))
    outputs = chats | "Payloads" >> beam.Map(lambda letter: letter.payload_bytes()) | "TriageChats" >> triage
    all_rows = (outputs[MAIN], rows | "Rows" >> beam.MapTuple(lambda _letter, row: row)) | "AllRows" >> beam.Flatten()
    if settings.bigquery_table:
        rejected = all_rows | "WriteToBigQuery" >> WriteTriageRows(settings.bigquery_table, **bigquery_write_kwargs)
        failures = (outputs[ERROR], rejected) | "AllFailures" >> beam.Flatten()
    else:
        failures = outputs[ERROR]
    tried = (chats, rows | "RowLetters" >> beam.MapTuple(lambda letter, _row: letter)) | "Tried" >> beam.Flatten()
    attempts = {"tried": tried, "failed": failures} | "NextAttempts" >> NextAttempts(settings.max_attempts)
    parked = (parsed[PARKED], plan[PARKED], attempts[PARKED]) | "AllParked" >> beam.Flatten()

    if settings.output_dir:
        results = {
            MAIN: all_rows, NEGATIVE: outputs[NEGATIVE], CHECK: outputs[CHECK], ERROR: attempts.retry, PARKED: parked,
        }
        for name, records in results.items():
            records | f"Write_{name}" >> WriteJsonLines(os.path.join(settings.output_dir, name))
    else:
        (
            (outputs[NEGATIVE], outputs[CHECK])
            | "ForReview" >> beam.Flatten()
            | "PublishForReview" >> PublishRecords(settings.review_topic)
        )
        attempts.retry | "PublishDeadLetters" >> PublishRecords(settings.dead_letter_topic)
        parked | "PublishParked" >> PublishRecords(settings.parked_topic)


def _skip_landed(chats, rows, table: str, test_client):
    """The chats and rows whose chat has no row in `table` yet."""
    ids = (
        (chats | "ChatIds" >> beam.Map(lambda letter: letter.chat_id),
         rows | "RowIds" >> beam.MapTuple(lambda letter, _row: letter.chat_id))
        | "ReplayedIds" >> beam.Flatten()
    )
    landed = beam.pvalue.AsSingleton(ids | "LandedChatIds" >> LandedChatIds(table, test_client))
    chats = chats | "SkipLandedChats" >> beam.Filter(lambda letter, done: letter.chat_id not in done, landed)
    rows = rows | "SkipLandedRows" >> beam.Filter(lambda pair, done: pair[0].chat_id not in done, landed)
    return chats, rows


JOB = Job(
    prog="python -m pipeline.replay",
    description="The replay job (batch): dead letters from files or a subscription, through the triage graph "
    "again, into files or the streaming job's sinks.",
    options=(BatchOptions, StreamingOptions, ReplayOptions, TriageOptions, VariantOptions),
    check=ReplaySettings.from_options,
)


def run(
    argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None, **bigquery_write_kwargs
) -> beam.runners.runner.PipelineResult:
    """Parses flags, builds the graph and runs it; returns its result (metrics).

    Local runners return when the job is done; on Dataflow this returns once the job is submitted, as a Flex
    Template launcher must. `bigquery_write_kwargs` are for the local stack; the command line passes none.
    """

    def build(pipeline: beam.Pipeline, options: PipelineOptions, triage: TriageChats) -> None:
        build_pipeline(pipeline, ReplaySettings.from_options(options), triage, **bigquery_write_kwargs)

    return JOB.start(argv, build, test_pipeline)


if __name__ == "__main__":
    main(run, wait=False)
