"""Batch entry point: JSON Lines chats in, `main`/`negative`/`error` JSON Lines files out.

    python -m pipeline.batch --input 'chats/*.jsonl' --output_dir out/ [--model PRESET] [--runner FnApiRunner]
"""

from __future__ import annotations

import os

import apache_beam as beam
from apache_beam.coders import BytesCoder
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.graph import TriageChats
from pipeline.launch import Job, main
from pipeline.options import BatchOptions, TriageOptions, VariantOptions
from pipeline.sinks import WriteJsonLines


def build_pipeline(pipeline: beam.Pipeline, input_glob: str, output_dir: str, triage: TriageChats) -> None:
    """Reads every line as raw bytes (so bad UTF-8 becomes a dead letter, not a crash) and writes the outputs."""
    outputs = (
        pipeline
        | "ReadChats" >> beam.io.ReadFromText(input_glob, coder=BytesCoder())
        | "SkipBlankLines" >> beam.Filter(lambda line: line.strip())
        | "TriageChats" >> triage
    )
    for name, records in outputs.items():
        records | f"Write_{name}" >> WriteJsonLines(os.path.join(output_dir, name))


JOB = Job(
    prog="python -m pipeline.batch",
    description="The batch job: JSON Lines chats in; main, negative and error JSON Lines files out.",
    options=(BatchOptions, TriageOptions, VariantOptions),
    required=("input", "output_dir"),
)


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> None:
    """Parses flags, builds the graph and runs it to completion."""

    def build(pipeline: beam.Pipeline, options: PipelineOptions, triage: TriageChats) -> None:
        batch = options.view_as(BatchOptions)
        build_pipeline(pipeline, batch.input, batch.output_dir, triage)

    JOB.start(argv, build, test_pipeline).wait_until_finish()


if __name__ == "__main__":
    main(run, wait=False)
