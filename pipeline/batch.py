"""Batch entry point: JSON Lines chats in, `main`/`negative`/`error` JSON Lines files out.

    python -m pipeline.batch --input 'chats/*.jsonl' --output_dir out/ [--model PRESET] [--runner FnApiRunner]
"""

from __future__ import annotations

import logging
import os

import apache_beam as beam
from apache_beam.coders import BytesCoder

from pipeline.graph import TriageChats
from pipeline.options import BatchOptions, TriageOptions, parse_options, require, use_default_model
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


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> None:
    """Parses flags, builds the graph and runs it to completion."""
    options = parse_options(argv, "FnApiRunner")
    batch, triage = options.view_as(BatchOptions), options.view_as(TriageOptions)
    require(batch, "input", "output_dir")
    use_default_model(triage)
    pipeline = test_pipeline or beam.Pipeline(options=options)
    build_pipeline(pipeline, batch.input, batch.output_dir, TriageChats.from_options(triage))
    pipeline.run().wait_until_finish()


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    run()
