"""Evaluation entry point: how well the triage model's sentiment matches labeled data.

    python -m training.evaluate --labeled ../shared/data/tweeteval_sentiment_val.jsonl --limit 300 [--model PRESET]
    python -m training.evaluate --labeled samples/chats.jsonl --label_file samples/labels.jsonl
    python -m training.evaluate --labeled ROWS --model TUNED --compare BASE --sentiment_only

Each labeled row becomes a chat message and goes through the batch job's own transforms (parse, prompt, model,
reply parser); with `--sentiment_only` the model only picks the label (score mode), without the summary. Every
`--compare` preset is evaluated on the same rows after `--model`, each with its own family's prompt; a table
compares them, and the reports are printed as JSON on the last line.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.contracts import LabeledExample, SentimentComparison, SentimentReport
from pipeline.inputs import ParseChats
from pipeline.launch import Job
from pipeline.models import TRIAGE_NAMESPACE, triage_model, use_default_model
from pipeline.options import TriageOptions
from pipeline.prompts import PromptTemplate, SentimentMode
from pipeline.tags import ERROR, MAIN, NEGATIVE
from pipeline.triage import CreatePrompts, Triage
from training.options import EvaluateOptions

CLASSES = {-1: "negative", 0: "neutral", 1: "positive"}


def _sentiment_only_needs_score_mode(options: PipelineOptions) -> None:
    if (
        options.view_as(EvaluateOptions).sentiment_only
        and options.view_as(TriageOptions).sentiment_mode != SentimentMode.SCORE
    ):
        raise ValueError("--sentiment_only needs --sentiment_mode score: only a scored label comes without a reply")


JOB = Job(
    prog="python -m training.evaluate",
    description="How well the triage model's sentiment matches labeled rows, through the batch job's transforms.",
    options=(EvaluateOptions, TriageOptions),
    required=("labeled",),
    check=_sentiment_only_needs_score_mode,
)


def load_labeled(pattern: str, labels_path: str | None = None, limit: int | None = None) -> list[tuple[dict, int]]:
    """`(chat message, label)` pairs in file order.

    Lines are `{"id", "text", "label"}` examples; with `labels_path`, they are chat messages and the labels
    come from that file's `{"id", "label"}` lines (chats without a label, malformed lines among them, are skipped).
    """
    lines = [line for path in sorted(glob.glob(pattern)) for line in Path(path).read_text("utf-8").splitlines()]
    if labels_path is None:
        examples = [LabeledExample.model_validate_json(line) for line in lines if line.strip()]
        pairs = [(example.as_chat(), example.label) for example in examples]
    else:
        labels = {str(row["id"]): row["label"] for row in map(json.loads, Path(labels_path).read_text().splitlines())}
        chats = [chat for chat in map(_json_object, lines) if chat and str(chat.get("id")) in labels]
        pairs = [(chat, labels[str(chat["id"])]) for chat in chats]
    ids = Counter(str(chat["id"]) for chat, _ in pairs)
    repeated = sorted(chat_id for chat_id, count in ids.items() if count > 1)
    if repeated:
        raise ValueError(f"labeled ids must be unique; repeated: {repeated[:5]}")
    return pairs[:limit]


def _json_object(line: str) -> dict | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class PickSentiment(beam.PTransform):
    """Chats in; `(chat id, sentiment)` out, the label a score-mode handler built with `choose_only` picks.

    No summary is generated, so there is no reply to validate; a batch whose inference fails gives `None`.
    """

    def __init__(self, handler, template: PromptTemplate):
        super().__init__()
        self._handler = handler
        self._template = template

    def expand(self, chats):
        labels = self._template.scoring.labels
        results, failures = (
            chats
            | "CreatePrompts" >> CreatePrompts(self._template, lambda chat: {"chat": chat.chat_message})
            | "RunInference" >> RunInference(KeyedModelHandler(self._handler)).with_exception_handling()
        )
        picked = results | "Label" >> beam.MapTuple(
            lambda chat, result: (chat.chat_id, labels[result.inference.choice])
        )
        failed = failures.failed_inferences | "FailedBatches" >> beam.FlatMap(_no_sentiments)
        return (picked, failed) | "Sentiments" >> beam.Flatten()


def _no_sentiments(failure: tuple[list, tuple]):
    """`(chat id, None)` for each chat of a batch whose inference raised; the error is logged, the rows count as
    errors in the report."""
    batch, (_, error, _) = failure
    logging.warning("inference failed for a batch of %d chats: %s", len(batch), error)
    return [(chat.chat_id, None) for chat, _prompt in batch]


def build_pipeline(
    pipeline: beam.Pipeline, chats: list[dict], triage: Triage | PickSentiment, output_prefix: str
) -> None:
    """Writes `{"id", "sentiment"}` lines, `sentiment` null where the chat ended in `error`."""
    parsed = (
        pipeline
        | "Chats" >> beam.Create([json.dumps(chat, ensure_ascii=False).encode("utf-8") for chat in chats])
        | "ParseAndValidate" >> ParseChats()
    )
    no_sentiment = [parsed[ERROR]]
    if isinstance(triage, PickSentiment):
        sentiments = [parsed.chats | "PickSentiment" >> triage]
    else:
        triaged = parsed.chats | "Triage" >> triage
        sentiments = [
            triaged[MAIN] | "MainSentiment" >> beam.Map(lambda row: (row.chat_id, row.sentiment)),
            triaged[NEGATIVE] | "NegativeSentiment" >> beam.Map(lambda negative: (negative.chat.chat_id, -1)),
        ]
        no_sentiment.append(triaged[ERROR])
    predictions = (
        *sentiments,
        no_sentiment | "Errors" >> beam.Flatten() | "NoSentiment" >> beam.Map(lambda letter: (letter.chat_id, None)),
    ) | "Predictions" >> beam.Flatten()
    _ = (
        predictions
        | "ToJson" >> beam.MapTuple(lambda chat_id, sentiment: json.dumps({"id": chat_id, "sentiment": sentiment}))
        | "Write" >> beam.io.WriteToText(output_prefix, file_name_suffix=".jsonl")
    )


def score(labels: dict[str, int], predicted: dict[str, int | None]) -> dict:
    """Macro recall and F1 over the three classes, per-class recall, the valid share and the confusion table.

    A row missing from `predicted` or predicted `None` counts as an error: wrong for every class.
    """
    confusion = {name: Counter() for name in CLASSES.values()}
    for chat_id, label in labels.items():
        confusion[CLASSES[label]][CLASSES.get(predicted.get(chat_id), ERROR)] += 1
    recall, f1 = {}, {}
    for name in CLASSES.values():
        true_positive = confusion[name][name]
        support = sum(confusion[name].values())
        predicted_as = sum(row[name] for row in confusion.values())
        recall[name] = true_positive / support if support else 0.0
        precision = true_positive / predicted_as if predicted_as else 0.0
        f1[name] = 2 * precision * recall[name] / (precision + recall[name]) if precision + recall[name] else 0.0
    errors = sum(row[ERROR] for row in confusion.values())
    return {
        "rows": len(labels),
        "valid_share": round(1 - errors / len(labels), 4),
        "error_share": round(errors / len(labels), 4),
        "macro_recall": round(sum(recall.values()) / len(CLASSES), 4),
        "macro_f1": round(sum(f1.values()) / len(CLASSES), 4),
        "recall": {name: round(value, 4) for name, value in recall.items()},
        "confusion": {name: dict(row) for name, row in confusion.items()},
    }


def _inference_seconds(result) -> float:
    """Seconds the triage model spent in inference, from RunInference's own latency metric."""
    distributions = result.metrics().query(MetricsFilter().with_namespace(TRIAGE_NAMESPACE))["distributions"]
    return sum(
        d.committed.sum for d in distributions if d.key.metric.name.endswith("inference_batch_latency_micro_secs")
    ) / 1e6


def run(argv: list[str] | None = None) -> SentimentComparison:
    """Parses flags, triages the labeled rows with each model, prints and returns the reports."""
    options = JOB.parse(argv)
    evaluation, triage_options = options.view_as(EvaluateOptions), options.view_as(TriageOptions)
    use_default_model(triage_options)
    pairs = load_labeled(evaluation.labeled, evaluation.label_file, evaluation.limit)
    if not pairs:
        raise SystemExit(f"no labeled rows in {evaluation.labeled}")
    labels = {str(chat["id"]): label for chat, label in pairs}
    reports = []
    for preset in [triage_options.model, *(evaluation.compare or [])]:
        triage_options.model = preset
        reports.append(_evaluate(options, pairs, labels, evaluation.sentiment_only))
        print(reports[-1].model_dump_json(), flush=True)
    comparison = SentimentComparison(reports=reports)
    print(comparison_table(comparison))
    print(comparison.model_dump_json())
    return comparison


def _evaluate(options: PipelineOptions, pairs: list[tuple[dict, int]], labels: dict, sentiment_only: bool):
    """One model's report: the rows through the job's transforms on a pipeline of their own."""
    handler, prompt = triage_model(options.view_as(TriageOptions), choose_only=sentiment_only)
    transform = PickSentiment(handler, prompt) if sentiment_only else Triage(handler, prompt)
    with tempfile.TemporaryDirectory() as scratch:
        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline, [chat for chat, _ in pairs], transform, os.path.join(scratch, "p"))
        started = time.monotonic()
        result = pipeline.run()
        result.wait_until_finish()
        wall_seconds = time.monotonic() - started
        rows = []
        for path in glob.glob(os.path.join(scratch, "p*")):
            with open(path) as lines:
                rows += [json.loads(line) for line in lines]
    return SentimentReport(
        **score(labels, {row["id"]: row["sentiment"] for row in rows}),
        chats_per_second=round(len(pairs) / max(_inference_seconds(result), 1e-9), 3),
        wall_seconds=round(wall_seconds, 1),
        model_id=handler.model_id,
        prompt_version=prompt.version,
        sentiment_only=sentiment_only,
    )


def comparison_table(comparison: SentimentComparison) -> str:
    """The reports side by side, one line per model, as a Markdown table."""
    lines = [
        "| model | prompt | rows | macro recall | macro F1 | recall neg / neu / pos | valid | chats/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for report in comparison.reports:
        recall = " / ".join(f"{report.recall[name]:.3f}" for name in CLASSES.values())
        lines.append(
            f"| {report.model_id} | {report.prompt_version} | {report.rows} | {report.macro_recall:.3f} | "
            f"{report.macro_f1:.3f} | {recall} | {report.valid_share:.0%} | {report.chats_per_second} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    run()
