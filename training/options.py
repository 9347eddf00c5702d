"""Command-line flags of the evaluation and tuning commands."""

from __future__ import annotations

import argparse

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.launch import HelpFormatter
from pipeline.options import INPUT_OUTPUT
from pipeline.prompts import Family
from training.encoding import STEPS

EVALUATION = "evaluation"


class EvaluateOptions(PipelineOptions):
    """Flags of `python -m training.evaluate`, beside `TriageOptions`."""

    @classmethod
    def _add_argparse_args(cls, parser):
        files = parser.add_argument_group(INPUT_OUTPUT)
        files.add_argument(
            "--labeled",
            help='Glob of JSON Lines files: {"id", "text", "label"} lines, or chats with --label_file. Lines that '
            'carry references ("summary", "reply", "key_terms", "language") also get a report of the text.',
        )
        files.add_argument(
            "--label_file", default=None,
            help='JSON Lines file of {"id", "label"} lines for --labeled chat files.',
        )
        evaluation = parser.add_argument_group(EVALUATION)
        evaluation.add_argument("--limit", type=int, default=None, help="Evaluate only the first N labeled rows.")
        evaluation.add_argument(
            "--compare", action="append", default=None,
            help="Another preset to evaluate on the same rows after --model (repeatable), e.g. base against tuned.",
        )
        evaluation.add_argument(
            "--sentiment_only", action="store_true",
            help="Score mode: only pick the label, without generating the summary or drafts, so without a report "
            "of the text (several times faster).",
        )
        evaluation.add_argument(
            "--reliability", default=None, metavar="PREFIX",
            help="Also measure what the confidence is worth (score mode): accuracy per confidence bin, the expected "
            "calibration error and the share of chats a cascade must defer for the rest to reach a macro recall of "
            "0.80, written per model to PREFIX-<model id>.md, .json and .png.",
        )


def tune_options(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags of `python -m training.tune`, which runs no Beam pipeline: a plain parser, so that its flags (some
    named like the evaluation's) stay out of every `PipelineOptions` parse."""
    parser = argparse.ArgumentParser(
        prog="python -m training.tune", description="LoRA fine-tuning of a KerasHub Gemma preset.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--labeled", action="append", required=True,
        help='Glob of JSON Lines files of {"id", "text", "label"} rows to train on; repeat for more files.',
    )
    parser.add_argument("--base", default=None, help="KerasHub preset to tune (default: the local Gemma 3 270M base).")
    parser.add_argument("--output", required=True, help="Folder for the LoRA preset: adapter weights and manifest.")
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
    parser.add_argument(
        "--max_tokens", type=int, default=256, help="Skip sequences (prompt and text) longer than this, in tokens."
    )
    parser.add_argument(
        "--family", choices=[Family.TUNED.value, Family.TASK.value], default=Family.TUNED.value,
        help="tuned: the sentiment label only (the summary and reply come from the base prompts); task: the label, "
        "the summary and the reply, from the rows' reference texts, with prompts of their own.",
    )
    parser.add_argument(
        "--step", choices=["all", *STEPS], default="all",
        help="task family: which step the adapter learns: all (one adapter for both), triage (label and summary) "
        "or apology (the reply only; its epochs are judged by the held-out replies' loss).",
    )
    parser.add_argument(
        "--max_label_only_rows", type=int, default=None,
        help="Train on at most N of the rows without reference texts (e.g. tweets), keeping every row with them.",
    )
    parser.add_argument(
        "--init", default=None,
        help="A LoRA preset of this command (same base and rank) to start from instead of zero: a warm start.",
    )
    parser.add_argument(
        "--text_repeats", type=int, default=3,
        help="Passes over the rows with reference texts (summaries, replies) in each epoch: they are few.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the split, the shuffling and the LoRA init.")
    parser.add_argument(
        "--prompts_dir", default=None, help="Folder of prompt TOML files (default: the packaged prompts/)."
    )
    return parser.parse_args(argv)
