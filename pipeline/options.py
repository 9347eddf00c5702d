"""Command-line flags of every entry point, as Beam `PipelineOptions` (the Flex Template metadata mirrors them)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipeline.prompts import Family, SentimentMode


def _sampler(value: str) -> str | dict:
    """A KerasHub sampler: a name (`greedy`, `top_k`) or a JSON config such as `{"class_name": "top_k", ...}`."""
    return json.loads(value) if value.lstrip().startswith("{") else value


def _bool(value: str) -> bool:
    """`true` or `false`, as Flex Template parameters pass them (argparse's `type=bool` takes any text as true)."""
    if value.lower() not in {"true", "false"}:
        raise ValueError(f"expected true or false, got {value!r}")
    return value.lower() == "true"


def parse_options(argv: list[str] | None, default_runner: str, **overrides) -> PipelineOptions:
    """The command line's options, on `default_runner` unless `--runner` names another.

    Beam's own default, the DirectRunner, tries to download the Prism binary first; `FnApiRunner` (batch) and
    `BundleBasedDirectRunner` (streaming) run in this process.
    """
    options = PipelineOptions(argv, **overrides)
    standard = options.view_as(StandardOptions)
    standard.runner = standard.runner or default_runner
    return options


def require(options: PipelineOptions, *names: str) -> None:
    """Stops with a usage error naming the missing flags.

    Flags are not `required=True` in argparse because Beam parses every options class it has imported.
    """
    missing = [f"--{name}" for name in names if getattr(options, name) in (None, "")]
    if missing:
        raise SystemExit(f"missing required flags: {' '.join(missing)}")


# The shipped sentiment LoRA of the local Gemma 3 270M (README, Fine-tuning): part of a checkout, not of a wheel.
SHIPPED_LORA = Path(__file__).resolve().parents[1] / "models" / "gemma3-270m-sentiment-lora"


def default_model() -> str:
    """The local default: the shipped sentiment LoRA on the Gemma 3 270M, whose base is built once into the XDG
    cache (`make model`) and reused; the bare 270M where the LoRA is absent (an installed wheel).

    The converter's packages come with the `local-model` extra; production images name a preset instead.
    """
    from handlers import gguf_preset

    base = str(gguf_preset.build_preset())
    if SHIPPED_LORA.is_dir():
        return str(SHIPPED_LORA)
    logging.warning("no shipped LoRA at %s: the default model is the untuned Gemma 3 270M", SHIPPED_LORA)
    return base


def use_default_model(options: TriageOptions) -> None:
    """Without `--model`, `default_model()`."""
    if not options.model:
        options.model = default_model()


class TriageOptions(PipelineOptions):
    """The model and prompts, shared by the batch and streaming jobs."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--model",
            help="KerasHub preset for triage: a folder (a LoRA preset of `pipeline.tune` too), gs://… or kaggle://… "
            "(default: the shipped sentiment LoRA on the local Gemma 3 270M).",
        )
        parser.add_argument("--model_id", default=None, help="Model id written into outputs (default: the preset's name).")
        parser.add_argument(
            "--model_family", choices=["auto", *Family], default="auto",
            help="Which prompts fit the models: instruct (chat turns) or base (few-shot completion); "
            "auto reads it from each preset's name.",
        )
        parser.add_argument(
            "--sentiment_mode", choices=list(SentimentMode), default=SentimentMode.SCORE.value,
            help="score: the model's likelihood picks the sentiment label, then it writes the summary; "
            "generate: the model writes the whole JSON reply.",
        )
        parser.add_argument("--max_length", type=int, default=512, help="Max tokens, prompt plus reply, for triage.")
        parser.add_argument("--sampler", type=_sampler, default="greedy", help="Sampler for triage: a name or JSON config.")
        parser.add_argument("--apology_model", default=None, help="KerasHub preset for apologies (default: --model).")
        parser.add_argument("--apology_max_length", type=int, default=768, help="Max tokens, prompt plus draft.")
        parser.add_argument("--apology_sampler", type=_sampler, default="greedy", help="Sampler for apology drafts.")
        parser.add_argument("--max_batch_size", type=int, default=8, help="Most prompts per generate() call.")
        parser.add_argument(
            "--max_batch_duration_secs", type=int, default=None,
            help="Longest a streaming batch waits to fill up before it is sent to the model.",
        )
        parser.add_argument(
            "--inference_timeout_secs", type=int, default=None,
            help="Longest one batch may take, model load included (the first batch also compiles); a batch that "
            "takes longer is abandoned and its chats dead-lettered. Default: no limit.",
        )
        parser.add_argument("--prompts_dir", default=None, help="Folder of prompt TOML files (default: the packaged prompts/).")
        parser.add_argument(
            "--share_model_across_processes", type=_bool, default=True,
            help="true: one model per worker machine, shared by its SDK processes; false: one per process.",
        )
        parser.add_argument(
            "--warm_up", type=_bool, default=None,
            help="true: at model load, run every batch size and length bucket a stream can meet, so no batch "
            "compiles later (minutes of load on a CPU); false: each shape compiles at its first batch. "
            "Default: true for the streaming job, false for batch jobs.",
        )


class BatchOptions(PipelineOptions):
    """Flags of `python -m pipeline.batch` (and of the replay job's file mode), beside `TriageOptions`."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--input", help="Glob of JSON Lines files of chats (of dead letters, for pipeline.replay).")
        parser.add_argument("--output_dir", help="Folder for main*.jsonl, negative*.jsonl, error*.jsonl.")


class StreamingOptions(PipelineOptions):
    """Flags of `python -m pipeline.run` (and of the replay job's sink mode), beside `TriageOptions`."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--input_subscription",
            help="projects/P/subscriptions/S with chat JSON (with dead letters, which pipeline.replay drains).",
        )
        parser.add_argument("--bigquery_table", help="PROJECT:DATASET.TABLE for sentiment 1 and 0.")
        parser.add_argument("--review_topic", help="projects/P/topics/T for drafts to review.")
        parser.add_argument("--dead_letter_topic", help="projects/P/topics/T for dead letters.")


class ReplayOptions(PipelineOptions):
    """Flags of `python -m pipeline.replay` beside those it shares: `TriageOptions` for per-run overrides,
    `BatchOptions` (`--input`, `--output_dir`) and `StreamingOptions` (the subscription to drain, the sinks).

    Beam parses every options class in one parser, so a flag can be declared only once: the replay job reuses
    the other jobs' flags rather than declaring its own of the same name.
    """

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--max_attempts", type=int, default=3,
            help="Attempts a chat gets in all, its first run included; a dead letter that has had them is parked.",
        )
        parser.add_argument("--parked_topic", help="projects/P/topics/T for parked dead letters (final, not retried).")


class EvaluateOptions(PipelineOptions):
    """Flags of `python -m pipeline.evaluate`, beside `TriageOptions`."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--labeled", help='Glob of JSON Lines files: {"id", "text", "label"} lines, or chats with --labels.'
        )
        parser.add_argument(
            "--label_file", default=None,
            help='JSON Lines file of {"id", "label"} lines for --labeled chat files.',
        )
        parser.add_argument("--limit", type=int, default=None, help="Evaluate only the first N labeled rows.")
        parser.add_argument(
            "--compare", action="append", default=None,
            help="Another preset to evaluate on the same rows after --model (repeatable), e.g. base against tuned.",
        )
        parser.add_argument(
            "--sentiment_only", action="store_true",
            help="Score mode: only pick the label, without generating the summary (several times faster).",
        )


def tune_options(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags of `python -m pipeline.tune`, which runs no Beam pipeline: a plain parser, so that its flags (some
    named like the evaluation's) stay out of every `PipelineOptions` parse."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.tune", description=tune_options.__doc__)
    parser.add_argument(
        "--labeled", action="append",
        help='Glob of JSON Lines files of {"id", "text", "label"} rows to train on; repeat for more files.',
    )
    parser.add_argument("--base", default=None, help="KerasHub preset to tune (default: the local Gemma 3 270M base).")
    parser.add_argument("--output", help="Folder for the LoRA preset: adapter weights and manifest.")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank.")
    parser.add_argument(
        "--train_layers", type=int, default=6,
        help="Train the LoRA weights of the top N transformer layers only (cheaper backward pass).",
    )
    parser.add_argument("--epochs", type=int, default=3, help="Most passes over the training rows.")
    parser.add_argument("--batch_size", type=int, default=16, help="Rows per training step.")
    parser.add_argument("--learning_rate", type=float, default=1e-3, help="Adam's learning rate.")
    parser.add_argument(
        "--validation_share", type=float, default=0.1,
        help="Share of each class held out to measure macro recall after every epoch.",
    )
    parser.add_argument(
        "--patience", type=int, default=1, help="Stop after this many epochs without a better held-out macro recall."
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="Train on at most N rows (after the held-out share is set aside)."
    )
    parser.add_argument("--max_tokens", type=int, default=256, help="Skip rows whose prompt is longer, in tokens.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the split, the shuffling and the LoRA init.")
    parser.add_argument(
        "--prompts_dir", default=None, help="Folder of prompt TOML files (default: the packaged prompts/)."
    )
    return parser.parse_args(argv)
