"""Command-line flags of every entry point, as Beam `PipelineOptions` (the Flex Template metadata mirrors them)."""

from __future__ import annotations

import json

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.prompts import Family, SentimentMode


def _sampler(value: str) -> str | dict:
    """A KerasHub sampler: a name (`greedy`, `top_k`) or a JSON config such as `{"class_name": "top_k", ...}`."""
    return json.loads(value) if value.lstrip().startswith("{") else value


def _bool(value: str) -> bool:
    """`true` or `false`, as Flex Template parameters pass them (argparse's `type=bool` takes any text as true)."""
    if value.lower() not in {"true", "false"}:
        raise ValueError(f"expected true or false, got {value!r}")
    return value.lower() == "true"


def require(options: PipelineOptions, *names: str) -> None:
    """Stops with a usage error naming the missing flags.

    Flags are not `required=True` in argparse because Beam parses every options class it has imported.
    """
    missing = [f"--{name}" for name in names if getattr(options, name) in (None, "")]
    if missing:
        raise SystemExit(f"missing required flags: {' '.join(missing)}")


def use_default_model(options: TriageOptions) -> None:
    """Without `--model`, the local Gemma 3 270M: built once into the XDG cache (`make model`), then reused.

    The converter's packages come with the `local-model` extra; production images name a preset instead.
    """
    if not options.model:
        from handlers import gguf_preset

        options.model = str(gguf_preset.build_preset())


class TriageOptions(PipelineOptions):
    """The model and prompts, shared by the batch and streaming jobs."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--model", help="KerasHub preset for triage: a folder, gs://… or kaggle://… (default: the local Gemma 3 270M)."
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
