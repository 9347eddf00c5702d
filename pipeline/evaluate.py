"""Evaluation entry point: how well the triage model's sentiment matches labeled data.

    python -m pipeline.evaluate --labeled ../shared/data/tweeteval_sentiment_val.jsonl --limit 300 [--model PRESET]
    python -m pipeline.evaluate --labeled samples/chats.jsonl --label_file samples/labels.jsonl

Each labeled row becomes a chat message and goes through the batch job's own transforms (parse, prompt, model,
reply parser); the report is printed as JSON on the last line.
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
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipeline.contracts import LabeledExample, SentimentReport
from pipeline.graph import TRIAGE_NAMESPACE, triage_model
from pipeline.inputs import ParseChats
from pipeline.options import EvaluateOptions, TriageOptions, require, use_default_model
from pipeline.dead_letters import ERROR
from pipeline.triage import MAIN, NEGATIVE, Triage

CLASSES = {-1: "negative", 0: "neutral", 1: "positive"}


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


def build_pipeline(pipeline: beam.Pipeline, chats: list[dict], triage: Triage, output_prefix: str) -> None:
    """Writes `{"id", "sentiment"}` lines, `sentiment` null where the chat ended in `error`."""
    parsed = (
        pipeline
        | "Chats" >> beam.Create([json.dumps(chat, ensure_ascii=False).encode("utf-8") for chat in chats])
        | "ParseAndValidate" >> ParseChats()
    )
    triaged = parsed.chats | "Triage" >> triage
    predictions = (
        triaged[MAIN] | "MainSentiment" >> beam.Map(lambda row: (row.chat_id, row.sentiment)),
        triaged[NEGATIVE] | "NegativeSentiment" >> beam.Map(lambda negative: (negative.chat.chat_id, -1)),
        (parsed[ERROR], triaged[ERROR]) | "Errors" >> beam.Flatten() | "NoSentiment" >> beam.Map(
            lambda letter: (letter.chat_id, None)
        ),
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


def run(argv: list[str] | None = None) -> SentimentReport:
    """Parses flags, triages the labeled rows, prints and returns the report."""
    options = PipelineOptions(argv)
    standard = options.view_as(StandardOptions)
    standard.runner = standard.runner or "FnApiRunner"
    evaluation, triage_options = options.view_as(EvaluateOptions), options.view_as(TriageOptions)
    require(evaluation, "labeled")
    use_default_model(triage_options)
    pairs = load_labeled(evaluation.labeled, evaluation.label_file, evaluation.limit)
    if not pairs:
        raise SystemExit(f"no labeled rows in {evaluation.labeled}")
    handler, prompt = triage_model(triage_options)
    with tempfile.TemporaryDirectory() as scratch:
        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline, [chat for chat, _ in pairs], Triage(handler, prompt), os.path.join(scratch, "p"))
        started = time.monotonic()
        result = pipeline.run()
        result.wait_until_finish()
        wall_seconds = time.monotonic() - started
        rows = [json.loads(line) for path in glob.glob(os.path.join(scratch, "p*")) for line in open(path)]
    labels = {str(chat["id"]): label for chat, label in pairs}
    report = SentimentReport(
        **score(labels, {row["id"]: row["sentiment"] for row in rows}),
        chats_per_second=round(len(pairs) / max(_inference_seconds(result), 1e-9), 3),
        wall_seconds=round(wall_seconds, 1),
        model_id=handler.model_id,
        prompt_version=prompt.version,
    )
    print(report.model_dump_json())
    return report


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.WARNING)
    run()
