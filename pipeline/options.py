"""Command-line flags of the jobs, as Beam `PipelineOptions`, in the groups `--help` shows them in.

The Flex Templates' metadata mirrors them (a test keeps the two equal).
"""

from __future__ import annotations

import json

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.prompts import SUMMARY_LANGUAGES, Family, SentimentMode

# The groups of `--help`, in the order it lists them.
INPUT_OUTPUT = "input and output"
MODEL = "model"
BATCHING = "batching"
RELIABILITY = "reliability"
CHECKS = "sentiment checks"
GROUPS = (INPUT_OUTPUT, MODEL, BATCHING, RELIABILITY, CHECKS)


def _sampler(value: str) -> str | dict:
    """A KerasHub sampler: a name (`greedy`, `top_k`) or a JSON config such as `{"class_name": "top_k", ...}`."""
    return json.loads(value) if value.lstrip().startswith("{") else value


def _share(value: str) -> float:
    """A number from 0 to 1."""
    share = float(value)
    if not 0 <= share <= 1:
        raise ValueError(f"expected a number from 0 to 1, got {value!r}")
    return share


def _bool(value: str) -> bool:
    """`true` or `false`, as Flex Template parameters pass them (argparse's `type=bool` takes any text as true)."""
    if value.lower() not in {"true", "false"}:
        raise ValueError(f"expected true or false, got {value!r}")
    return value.lower() == "true"


class TriageOptions(PipelineOptions):
    """The models, prompts and batching, shared by every job."""

    @classmethod
    def _add_argparse_args(cls, parser):
        model = parser.add_argument_group(MODEL)
        model.add_argument(
            "--model",
            help="KerasHub preset for triage: a folder (a LoRA preset of `training.tune` too), gs://… or kaggle://… "
            "(default: the shipped triage LoRA on the local Gemma 3 270M).",
        )
        model.add_argument(
            "--model_id", default=None, help="Model id written into outputs (default: the preset's name)."
        )
        model.add_argument(
            "--model_family", choices=["auto", *Family], default="auto",
            help="Which prompts fit the models: instruct (chat turns) or base (few-shot completion); "
            "auto reads it from each preset's name.",
        )
        model.add_argument(
            "--sentiment_mode", choices=list(SentimentMode), default=SentimentMode.SCORE.value,
            help="score: the model's likelihood picks the sentiment label, then it writes the summary; "
            "generate: the model writes the whole JSON reply.",
        )
        model.add_argument("--max_length", type=int, default=512, help="Max tokens, prompt plus reply, for triage.")
        model.add_argument(
            "--sampler", type=_sampler, default="greedy", help="Sampler for triage: a name or JSON config."
        )
        model.add_argument(
            "--summary_language", choices=["auto", *SUMMARY_LANGUAGES], default="auto",
            help="Language of every summary: auto (the chat's own) or one ISO 639-1 code for all, for teams that "
            "read one language (score mode; the draft is always in the customer's language).",
        )
        model.add_argument(
            "--read_imitations_apart", type=_bool, default="true",
            help="true: a chat that holds a line in the form of the model's answer (`Sentiment: positive`, "
            "`감정: 긍정`: prompt injection) is also read in parts, cut at those lines and at blank lines, and its "
            "most negative reading wins (score mode).",
        )
        model.add_argument(
            "--apology_model", default=None,
            help="KerasHub preset for apologies (default: --model; without --model, the shipped apology LoRA).",
        )
        model.add_argument("--apology_max_length", type=int, default=768, help="Max tokens, prompt plus draft.")
        model.add_argument("--apology_sampler", type=_sampler, default="greedy", help="Sampler for apology drafts.")
        model.add_argument(
            "--prompts_dir", default=None, help="Folder of prompt TOML files (default: the packaged prompts/)."
        )
        model.add_argument(
            "--share_model_across_processes", type=_bool, default="true",
            help="true: one model per worker machine, shared by its SDK processes; false: one per process.",
        )
        model.add_argument(
            "--prefix_cache", type=_bool, default="true",
            help="true: each prompt head's key/value cache is computed once per model and every prompt is prefilled "
            "only after it, its label and summary in one prefill; false: every prompt is prefilled whole. "
            "Default: true.",
        )
        batching = parser.add_argument_group(BATCHING)
        batching.add_argument("--max_batch_size", type=int, default=8, help="Most prompts per generate() call.")
        batching.add_argument(
            "--max_batch_duration_secs", type=int, default=None,
            help="Longest a streaming batch waits to fill up before it is sent to the model.",
        )
        batching.add_argument(
            "--warm_up", type=_bool, default=None,
            help="true: at model load, run every batch size and length bucket a stream can meet, so no batch "
            "compiles later (minutes of load on a CPU); false: each shape compiles at its first batch. "
            "Default: true for the streaming job, false for batch jobs.",
        )
        parser.add_argument_group(RELIABILITY).add_argument(
            "--inference_timeout_secs", type=int, default=None,
            help="Longest one batch may take, model load included (the first batch also compiles); a batch that "
            "takes longer is abandoned and its chats dead-lettered. Default: no limit.",
        )
        checks = parser.add_argument_group(CHECKS)
        checks.add_argument(
            "--check_below_confidence", type=_share, default=None,
            help="Send each positive or neutral chat whose label's confidence is under this (0 to 1) to the review "
            "topic as a sentiment check too; its BigQuery row is still written. Score mode only (generate mode has "
            "no confidence). Default: none.",
        )
        checks.add_argument(
            "--check_sample_rate", type=_share, default=0.0,
            help="Send this share (0 to 1) of the chats, chosen by a hash of the chat id (the same on replay), as "
            "sentiment checks; a negative chat is reviewed with its draft anyway.",
        )
        checks.add_argument(
            "--check_imitations", type=_bool, default="true",
            help="true: send each positive or neutral chat that holds a line in the form of the model's answer "
            "(`Sentiment: positive`, `감정: 긍정`, a JSON reply with a sentiment: prompt injection) as a sentiment "
            "check too.",
        )


def check_triage(options: PipelineOptions) -> None:
    """Raises `ValueError` for triage flags that contradict each other."""
    triage = options.view_as(TriageOptions)
    if triage.summary_language != "auto" and triage.sentiment_mode != SentimentMode.SCORE:
        raise ValueError("--summary_language needs --sentiment_mode score: generate mode writes its own JSON")


class VariantOptions(PipelineOptions):
    """The apology variants of the jobs that draft apologies for agents (streaming, batch, replay)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument_group(MODEL).add_argument(
            "--apology_variants", default=None,
            help="TOML file (local or gs://) naming apology variants, each with its share of the negative chats, "
            "preset, prompt, sampler and max_length (docs/models-and-prompts.md#apology-variants). Default: one "
            "variant, `default`, of the apology flags.",
        )


class BatchOptions(PipelineOptions):
    """Flags of `python -m pipeline.batch` (and of the replay job's file mode), beside `TriageOptions`."""

    @classmethod
    def _add_argparse_args(cls, parser):
        files = parser.add_argument_group(INPUT_OUTPUT)
        files.add_argument("--input", help="Glob of JSON Lines files of chats (of dead letters, for pipeline.replay).")
        files.add_argument("--output_dir", help="Folder for main*.jsonl, negative*.jsonl, error*.jsonl.")


class StreamingOptions(PipelineOptions):
    """Flags of `python -m pipeline.run` (and of the replay job's sink mode), beside `TriageOptions`."""

    @classmethod
    def _add_argparse_args(cls, parser):
        topics = parser.add_argument_group(INPUT_OUTPUT)
        topics.add_argument(
            "--input_subscription",
            help="projects/P/subscriptions/S with chat JSON (with dead letters, which pipeline.replay drains).",
        )
        topics.add_argument("--bigquery_table", help="PROJECT:DATASET.TABLE for sentiment 1 and 0.")
        topics.add_argument("--review_topic", help="projects/P/topics/T for drafts to review.")
        topics.add_argument("--dead_letter_topic", help="projects/P/topics/T for dead letters.")


class ReplayOptions(PipelineOptions):
    """Flags of `python -m pipeline.replay` beside those it shares: `TriageOptions` for per-run overrides,
    `BatchOptions` (`--input`, `--output_dir`) and `StreamingOptions` (the subscription to drain, the sinks).

    Beam parses every options class in one parser, so a flag can be declared only once: the replay job reuses
    the other jobs' flags rather than declaring its own of the same name.
    """

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument_group(INPUT_OUTPUT).add_argument(
            "--parked_topic", help="projects/P/topics/T for parked dead letters (final, not retried)."
        )
        parser.add_argument_group(RELIABILITY).add_argument(
            "--max_attempts", type=int, default=3,
            help="Attempts a chat gets in all, its first run included; a dead letter that has had them is parked.",
        )
